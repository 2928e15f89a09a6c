// `traktor ctl` as a user runs it, against a live two-node mesh: tables and --json for every
// read, a change committed and one aborted with the node's reason, and the exit codes a script
// branches on (1 refused, 2 usage, 3 unreachable, 4 API key), env defaults and --watch.
import { spawn } from 'node:child_process'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort } from '../fixtures/arbiters.js'
import { call, KEY, MeshCluster, waitFor } from '../fixtures/mesh-cluster.js'

const BIN = path.resolve(import.meta.dirname, '../../bin/traktor.js')

let c: MeshCluster

const T = (name: string) =>
  `CREATE TABLE demo.${name} (id int PRIMARY KEY, payload text); ALTER TABLE demo.${name} OWNER TO traktor_arbiter`

interface Run {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Start `traktor ctl ARGS` with only the environment given (no TRAKTOR_* leaking in). */
function start(args: string[], env: Record<string, string> = {}) {
  const { TRAKTOR_URL: _u, TRAKTOR_API_KEY: _k, ...rest } = process.env
  const proc = spawn(process.execPath, [BIN, 'ctl', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...rest, ...env },
  })
  const run: Run = { code: null, signal: null, stdout: '', stderr: '' }
  proc.stdout.on('data', (d: Buffer) => {
    run.stdout += d.toString()
  })
  proc.stderr.on('data', (d: Buffer) => {
    run.stderr += d.toString()
  })
  const done = new Promise<Run>((resolve) =>
    proc.once('close', (code, signal) => {
      run.code = code
      run.signal = signal
      resolve(run)
    }),
  )
  return { proc, run, done }
}

/** `traktor ctl --url <node i> --api-key KEY ARGS` */
function ctl(i: number, ...args: string[]): Promise<Run> {
  return start(['--url', c.api(i).url, '--api-key', KEY, ...args]).done
}

function ctlRaw(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return start(args, env).done
}

// this file drives TRAKTOR's skip path in mesh mode; row-level lww is in lww.test.ts
beforeAll(async () => {
  c = await MeshCluster.create(2, 'ctl', { resolver: 'skip' })
  for (const i of [0, 1]) await c.q(i, T('t'))
  await c.q(0, T('half'))
  // the history test renders skipped transactions (TRAKTOR's resolver); the mesh default since
  // issue 10 is row-level lww, whose rows lww.test.ts and openapi.test.ts cover
  await Promise.all([0, 1].map((i) => c.start(i, { resolver: 'skip' })))
  await c.waitMeshed([0, 1])
  await c.waitSubscribed([0, 1])
})

afterAll(async () => {
  await c?.destroy()
})

describe('traktor ctl', () => {
  it('shows the status of every node as a table and as JSON', async () => {
    const [human, json] = await Promise.all([ctl(0, 'status'), ctl(1, 'status', '--json')])
    expect(human.code, human.stderr).toBe(0)
    expect(human.stdout).toMatch(/Cluster seen from node 0, healthy, replicaset version 0/)
    expect(human.stdout).toMatch(/\| NODE \| STATE +\| REPLICATING \| TAINTED \|/)
    expect(human.stdout).toMatch(/\| +0 \| alive +\| yes +\| no +\| +0\/0 \| +\d+ \| +1\/1 \|/)
    expect(human.stdout).toMatch(/\| +1 \| alive +\| yes +\| no +\| +0\/0 \| +\d+ \| +1\/1 \|/)
    expect(json.code, json.stderr).toBe(0)
    const s = JSON.parse(json.stdout)
    expect(s).toMatchObject({ node: 1, healthy: true })
    expect(s.members.map((m: { node: number }) => m.node)).toEqual([0, 1])
    expect(json.stdout).toContain('\n  "node": 1') // pretty
  })

  it('lists the nodes as a table and as JSON', async () => {
    const [human, json] = await Promise.all([ctl(1, 'nodes'), ctl(1, 'nodes', '--json')])
    expect(human.code, human.stderr).toBe(0)
    const lines = human.stdout.split('\n')
    expect(lines[0]).toMatch(/^\+ Nodes seen from node 1 -*\+/)
    expect(lines[1]).toMatch(/NODE \| STATE \| JOIN +\| VERSION \| LAST HEARD +\| POSTGRES/)
    const row0 = lines.find((l) => /^\| +0 \|/.test(l))
    const row1 = lines.find((l) => /^\| +1 \|/.test(l))
    expect(row0).toMatch(/alive \| ready \| .* s ago +\| 127\.0\.0\.1:\d+\/app/)
    expect(row1).toMatch(/alive \| ready \| .*this arbiter/)
    expect(human.stdout).not.toMatch(/password/)
    expect(json.code).toBe(0)
    expect(JSON.parse(json.stdout).nodes).toHaveLength(2)
  })

  it('adds a table with one call, says so, and lists it', async () => {
    const empty = await ctl(0, 'replicaset', 'list')
    expect(empty.stdout).toMatch(/replicaset version 0 \(node 0\)\nno tables in the replicaset/)
    const add = await ctl(0, 'replicaset', 'add', 'demo.t')
    expect(add.code, add.stderr).toBe(0)
    expect(add.stdout.trim()).toMatch(/^committed demo\.t \(version 1\) on nodes 0,1 in \d+ ms$/)
    const [again, list, json] = await Promise.all([
      ctl(1, 'replicaset', 'add', 'demo.t'),
      ctl(1, 'replicaset', 'list'),
      ctl(0, '--json', 'replicaset', 'list'),
    ])
    expect(again.code).toBe(0)
    expect(again.stdout.trim()).toBe('unchanged: demo.t is already in the replicaset (version 1)')
    expect(list.code).toBe(0)
    expect(list.stdout).toMatch(/^replicaset version 1 \(node 1\)\n/)
    expect(list.stdout).toMatch(/\| RELATION \| STATUS +\|\n.*\n\| demo\.t +\| committed \|/)
    expect(JSON.parse(json.stdout)).toMatchObject({
      version: 1,
      replicaset: [{ relation: 'demo.t', status: 'committed' }],
    })
  })

  it('exits 1 with the reason per node when a change aborts', async () => {
    const [r, j] = await Promise.all([
      ctl(0, 'replicaset', 'add', 'demo.half'),
      ctl(0, '--json', 'replicaset', 'add', 'demo.half'),
    ])
    expect(r.code).toBe(1)
    expect(r.stdout).toBe('')
    expect(r.stderr).toMatch(
      /^aborted: add demo\.half, nothing changed \(replicaset stays at version 1\)/,
    )
    expect(r.stderr).toMatch(/ {2}node 0: acknowledged/)
    expect(r.stderr).toMatch(/ {2}node 1: refused: .*demo\.half.*does not exist/)
    // --json: the server's answer on stdout for scripts, the reasons still on stderr
    expect(j.code).toBe(1)
    expect(JSON.parse(j.stdout)).toMatchObject({ outcome: 'aborted', relation: 'demo.half' })
    expect(j.stderr).toMatch(/node 1: refused/)
    // a refusal that is not an abort: a node cannot remove (or re-admit) itself
    const [list, self] = await Promise.all([
      ctl(1, '--json', 'replicaset', 'list'),
      ctl(0, 'remove-node', '0'),
    ])
    expect(JSON.parse(list.stdout).version).toBe(1)
    expect(self.code).toBe(1)
    expect(self.stderr).toMatch(/refused \(400 ERR_BAD_REQUEST\): a node cannot remove itself/)
  })

  it('shows the history of every node, empty and with conflicts', async () => {
    const [empty, emptyJson] = await Promise.all([ctl(0, 'history'), ctl(0, 'history', '--json')])
    expect(empty.code).toBe(0)
    expect(empty.stdout.trim()).toBe('no conflicts or apply errors recorded (seen from node 0)')
    expect(JSON.parse(emptyJson.stdout).resolutions).toEqual([])
    // split brain on demo.t: both nodes write id 500 while apart, then both resolvers skip
    await c.cut([
      [0, 1],
      [1, 0],
    ])
    await c.q(0, `INSERT INTO demo.t VALUES (500, 'zero')`)
    await c.q(1, `INSERT INTO demo.t VALUES (500, 'one')`)
    await c.heal([
      [0, 1],
      [1, 0],
    ])
    await waitFor(
      async () => {
        const r = await call(c.api(1), 'GET', '/v1/cluster/history')
        const res = (r.json?.resolutions ?? []) as Array<{
          node: number
          sql_state_code: string
          resolved: unknown
        }>
        const done = res.filter((x) => x.sql_state_code === '23505' && x.resolved)
        return done.length === 2 ? done : false
      },
      15_000,
      'both resolutions',
    )
    const [human, json, status] = await Promise.all([
      ctl(1, 'history'),
      ctl(0, 'history', '--json'),
      ctl(0, 'status'),
    ])
    const resolutions = JSON.parse(json.stdout).resolutions as Array<{ node: number }>
    expect(resolutions.map((x) => x.node).sort()).toEqual([0, 1])
    expect(human.code).toBe(0)
    const lines = human.stdout.split('\n')
    expect(lines[0]).toMatch(/^\+ History seen from node 1, times UTC -*\+/)
    expect(lines[1]).toMatch(
      /\| NODE \| OCCURRED +\| SUBSCRIPTION +\| RELATION \| SQLSTATE \| RESOLVED +\| REASON +\|/,
    )
    for (const [node, sub] of [
      [0, 'trktr_sub_0_1'],
      [1, 'trktr_sub_1_0'],
    ]) {
      expect(human.stdout).toMatch(
        new RegExp(
          `\\| +${node} \\| \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d \\| ${sub} \\| demo\\.t +\\| 23505 +\\| after [\\d.]+ (s|min) \\(skip\\) \\| .*\\(500\\) already exists`,
        ),
      )
    }
    expect(status.stdout).toMatch(/\| +0 \| alive +\| yes +\| yes +\| +1\/0 \|/)
  })

  it('exits 4 on a wrong or missing API key', async () => {
    const [wrong, missing] = await Promise.all([
      ctlRaw(['--url', c.api(0).url, '--api-key', 'nope', 'status']),
      ctlRaw(['--url', c.api(0).url, 'nodes']),
    ])
    expect(wrong.code).toBe(4)
    expect(wrong.stderr).toContain(`the arbiter at ${c.api(0).url} refused the API key`)
    expect(wrong.stderr).not.toContain('nope')
    expect(missing.code).toBe(4)
    expect(missing.stderr).toMatch(/wants an API key: pass --api-key KEY or set TRAKTOR_API_KEY/)
  })

  it('exits 3 naming the URL when the arbiter cannot be reached', async () => {
    const url = `http://127.0.0.1:${await freePort()}`
    const [r, add] = await Promise.all([
      ctlRaw(['--url', url, '--api-key', KEY, 'status']),
      ctlRaw(['--url', url, '--api-key', KEY, 'replicaset', 'add', 'demo.t']),
    ])
    expect(r.code).toBe(3)
    expect(r.stderr.trim()).toBe(
      `traktor ctl: cannot reach the arbiter at ${url} (connection refused)`,
    )
    expect(add.code).toBe(3)
  })

  it('exits 2 on usage errors, 0 on --help', async () => {
    // one of each kind; test/unit/ctl-args.test.ts has the rest
    const cases = [
      [],
      ['bogus'],
      ['replicaset', 'add', 'demo.t;drop'],
      ['--timeout', 'soon', 'status'],
      ['--watch', '1', 'replicaset', 'add', 'demo.t'],
    ]
    const runs = await Promise.all(cases.map((args) => ctlRaw(args)))
    for (const [i, r] of runs.entries()) {
      expect(r.code, `${cases[i]?.join(' ')}: ${r.stderr}`).toBe(2)
      expect(r.stderr).toMatch(/^traktor ctl: .+\n\(traktor ctl --help shows the usage\)\n$/)
      expect(r.stdout).toBe('')
    }
    const help = await ctlRaw(['--help'])
    expect(help.code).toBe(0)
    expect(help.stdout).toMatch(/usage: traktor ctl \[options\] COMMAND/)
    expect(help.stdout).toMatch(/replicaset add SCHEMA\.TABLE/)
  })

  it('takes the URL and the key from TRAKTOR_URL and TRAKTOR_API_KEY', async () => {
    const env = { TRAKTOR_URL: c.api(1).url, TRAKTOR_API_KEY: KEY }
    const [r, o, bad] = await Promise.all([
      ctlRaw(['nodes'], env),
      // options win over the environment
      ctlRaw(['--url', c.api(0).url, 'nodes'], env),
      ctlRaw(['nodes'], { ...env, TRAKTOR_API_KEY: 'nope' }),
    ])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toMatch(/Nodes seen from node 1/)
    expect(o.stdout).toMatch(/Nodes seen from node 0/)
    expect(bad.code).toBe(4)
  })

  it('--watch redraws until Ctrl-C, then exits 0', async () => {
    const w = start(['--url', c.api(0).url, '--api-key', KEY, '--watch', '1', 'status'])
    await waitFor(
      () => (w.run.stdout.match(/^Every 1 s: traktor ctl status · /gm) ?? []).length >= 2,
      10_000,
      'two refreshes',
      50,
    )
    w.proc.kill('SIGINT')
    const r = await w.done
    expect(r.code, r.stderr).toBe(0)
    expect(r.signal).toBeNull()
    expect(r.stdout.match(/Cluster seen from node 0/g)?.length).toBeGreaterThanOrEqual(2)
  })
})
