// Fault 6: fuzzing. Thousands of generated requests to every REST route and to JSON-RPC, and
// thousands of generated gossip messages, RPC frames and RPC calls: no crash, every bad request
// a 4xx or a JSON-RPC error, and nothing changed in the database. Hundreds of log lines an
// unprivileged user makes the server write, shaped like an apply worker's conflict: nothing
// acted on. A seeded generator (the seed is printed on failure) instead of a library: the cases
// are plain data.
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { arbiterRoutes } from '../../src/api/routes/arbiter.js'
import { clusterRoutes } from '../../src/api/routes/cluster.js'
import { jsonRpcRoutes } from '../../src/api/routes/jsonrpc.js'
import { buildApp } from '../../src/api/server.js'
import { CheckNode } from '../../src/cluster/check-node.js'
import { CommitMode } from '../../src/cluster/commit-mode.js'
import { rpcHandler } from '../../src/cluster/rpc-handlers.js'
import { Steps } from '../../src/cluster/steps.js'
import { silentLogger } from '../../src/log.js'
import type { Mesh } from '../../src/mesh/node.js'
import { LocalNode } from '../../src/postgres/local.js'
import { LogParser } from '../../src/postgres/logparse.js'
import { PUBLICATION } from '../../src/postgres/schema.js'
import { FailureIndex } from '../../src/resolver/failures.js'
import { Resolver } from '../../src/resolver/resolver.js'
import { waitFor as poll } from '../fixtures/arbiters.js'
import { createForgerRole, type ForgedEvent, Forger, waitLogged } from '../fixtures/forge.js'
import { conflictEvent, fullMesh, MeshLab, waitFor } from '../fixtures/mesh-nodes.js'
import { API_KEY, dbSnapshot } from '../fixtures/node.js'
import { type PgServer, startServers } from '../fixtures/pg.js'
import {
  ARBITER_PASSWORD,
  ARBITER_ROLE,
  prepareTutorialNode,
  REPTEST,
  TUTORIAL_DB,
} from '../fixtures/tutorial.js'

const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 100_000)
let state = SEED
function rnd(): number {
  // mulberry32
  state |= 0
  state = (state + 0x6d2b79f5) | 0
  let t = Math.imul(state ^ (state >>> 15), 1 | state)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)] as T
const int = (n: number) => Math.floor(rnd() * n)

const NASTY = [
  '',
  ' ',
  'a',
  // the real table (multimaster.reptest) is left out: staging it is a legitimate change
  'multimaster.reptest2',
  'multimaster."reptest',
  'multimaster.nosuch',
  'public.t;DROP TABLE x',
  "'; DROP TABLE multimaster.reptest; --",
  '"a"."b"',
  '"unterminated',
  'x'.repeat(300),
  '\u0000',
  '%00',
  '..',
  '../..',
  'ü.ö',
  '😀.t',
  'a.b.c',
  '$' + '{jndi:x}',
  '<script>',
  '1',
  '-1',
  '1e309',
  'null',
  'true',
  '{}',
  '[]',
]

function randomString(): string {
  if (rnd() < 0.5) return pick(NASTY)
  const len = int(40)
  let s = ''
  // any BMP character but lone surrogates (not encodable in a URL)
  for (let i = 0; i < len; i++) s += String.fromCharCode(rnd() < 0.9 ? 32 + int(95) : int(0xd800))
  return s
}

function randomJson(depth = 0): unknown {
  const r = rnd()
  if (depth > 3 || r < 0.3)
    return pick([null, true, false, int(1e6) - 5e5, rnd() * 1e9, randomString()])
  if (r < 0.6) return Array.from({ length: int(4) }, () => randomJson(depth + 1))
  const keys = [
    'inbound_node',
    'connection_string',
    'jsonrpc',
    'method',
    'params',
    'id',
    'table',
    randomString(),
  ]
  return Object.fromEntries(
    Array.from({ length: int(5) }, () => [pick(keys), randomJson(depth + 1)]),
  )
}

function randomRpc(): unknown {
  const methods = [
    'cluster.status',
    'cluster.nodes',
    'replicaset.add',
    'replicaset.remove',
    'replicaset.list',
    'history.list',
    'nope',
    randomString(),
  ]
  const one = () => ({
    ...(rnd() < 0.8 ? { jsonrpc: pick(['2.0', '1.0', 2]) } : {}),
    ...(rnd() < 0.9 ? { method: pick(methods) } : {}),
    ...(rnd() < 0.7 ? { params: rnd() < 0.5 ? { table: randomString() } : randomJson() } : {}),
    ...(rnd() < 0.8 ? { id: pick([1, 'a', null, {}, [], 1.5]) } : {}),
  })
  return rnd() < 0.2 ? Array.from({ length: int(5) }, one) : one()
}

describe('fuzzing the HTTP API', () => {
  let pg: PgServer
  let local: LocalNode
  let app: FastifyInstance

  beforeAll(async () => {
    ;[pg] = (await startServers(1, () => ({ name: 'fuzz', fast: true }))) as [PgServer]
    await prepareTutorialNode(pg)
    await pg.query(REPTEST, [], { dbname: TUTORIAL_DB })
    local = new LocalNode({
      nodeId: 0,
      conninfo: pg.conninfo({
        dbname: TUTORIAL_DB,
        user: ARBITER_ROLE,
        password: ARBITER_PASSWORD,
      }),
      log: silentLogger(),
    })
    await local.start()
    await local.initNode()
    app = buildApp({
      apiKey: API_KEY,
      publicEndpoints: true,
      log: silentLogger(),
      routes: [arbiterRoutes(local), clusterRoutes(undefined, 0), jsonRpcRoutes(undefined, 0)],
      health: async () => ({ ok: true, detail: {} }),
    })
    await app.ready()
  })

  afterAll(async () => {
    await app?.close()
    await local?.stop()
    await pg?.destroy()
  })

  it(`answers 3000 generated requests with 2xx/4xx, never a crash, never a change (seed ${SEED})`, async () => {
    const before = await dbSnapshot(pg)
    const routes = [
      ['GET', '/v1/arbiter/status'],
      ['GET', '/v1/arbiter/replicaset/status'],
      ['GET', '/v1/arbiter/resolution/history'],
      ['PUT', '/v1/arbiter/replicaset/:t'],
      ['DELETE', '/v1/arbiter/replicaset/:t'],
      ['PATCH', '/v1/arbiter/replicaset'],
      ['PUT', '/v1/arbiter/subscription/control'],
      ['DELETE', '/v1/arbiter/subscription/control'],
      ['PUT', '/v1/arbiter/control'],
      ['DELETE', '/v1/arbiter/control'],
      ['GET', '/v1/cluster/status'],
      ['PUT', '/v1/cluster/replicaset/:t'],
      ['DELETE', '/v1/cluster/nodes/:t'],
      ['POST', '/rpc'],
      ['GET', '/docs'],
      ['GET', '/healthz'],
      ['GET', '/:t'],
      ['POST', '/v1/arbiter/:t'],
    ] as const
    const failures: string[] = []
    for (let n = 0; n < 3000; n++) {
      const [method0, route] = pick(routes)
      const method =
        rnd() < 0.1 ? pick(['GET', 'PUT', 'DELETE', 'PATCH', 'POST', 'OPTIONS']) : method0
      const url = route.replace(':t', encodeURIComponent(randomString()))
      // requests that could legitimately change the database never carry the right key:
      // initialising again, tearing down, subscribing to a real address
      const mutating = /control/.test(route) && method !== 'GET'
      const key = mutating
        ? pick([undefined, 'wrong', `${API_KEY} `])
        : pick([API_KEY, API_KEY, API_KEY, undefined, 'wrong', ''])
      const body =
        route === '/rpc'
          ? JSON.stringify(randomRpc())
          : rnd() < 0.5
            ? JSON.stringify(randomJson())
            : randomString()
      const r = await app.inject({
        method: method as 'GET',
        url,
        headers: {
          ...(key === undefined ? {} : { 'x-api-key': key }),
          ...(rnd() < 0.8
            ? {
                'content-type': pick([
                  'application/json',
                  'text/plain',
                  'application/x-www-form-urlencoded',
                ]),
              }
            : {}),
        },
        ...(method === 'GET' ? {} : { payload: body }),
      })
      if (r.statusCode >= 500)
        failures.push(`${method} ${url} → ${r.statusCode} ${r.body.slice(0, 200)}`)
      if (route === '/rpc' && method === 'POST' && key === API_KEY && r.statusCode === 200) {
        const j = JSON.parse(r.body)
        const answers = Array.isArray(j) ? j : [j]
        for (const a of answers)
          if (a.jsonrpc !== '2.0' || (!('error' in a) && !('result' in a)))
            failures.push(`rpc: ${r.body.slice(0, 200)}`)
      }
    }
    expect(failures).toEqual([])
    expect(await dbSnapshot(pg)).toBe(before)
  })

  it(`handles 3000 generated mesh RPC calls without a crash or a change (seed ${SEED})`, async () => {
    const before = await dbSnapshot(pg)
    const steps = new Steps({ local, nodeId: 0, log: silentLogger() })
    const handler = rpcHandler({
      isMember: (peerId) => peerId === '12D3KooWfuzz',
      local,
      steps,
      log: silentLogger(),
      nodeStatus: async () => ({}),
      members: () => [],
      proposalStatus: async () => ({ decision: 'unknown' }),
      resubscribe: async () => {
        throw new Error('not in this test')
      },
      mergeRoster: async () => {
        throw new Error('not in this test')
      },
      resync: async () => {
        throw new Error('not in this test')
      },
      check: new CheckNode({ local, nodeId: 0, log: silentLogger() }),
      checkReport: () => {},
      commit: new CommitMode({
        local,
        nodeId: 0,
        members: () => [],
        log: silentLogger(),
        configured: { mode: 'async' },
        initialized: async () => true,
      }),
    })
    const methods = [
      'commit.check',
      'commit.set',
      'proposal.prepare',
      'proposal.step',
      'proposal.abort',
      'proposal.status',
      'replicaset.get',
      'roster.get',
      'members.list',
      'check.hashes',
      'check.rows',
      'check.report',
      'nope',
    ]
    for (let n = 0; n < 3000; n++) {
      const r = await handler('12D3KooWfuzz', { method: pick(methods), params: randomJson() })
      expect(typeof r.ok).toBe('boolean')
    }
    // a peer that never announced itself gets nothing else, whatever it asks
    for (let n = 0; n < 300; n++) {
      const r = await handler('12D3KooWstranger', { method: pick(methods), params: randomJson() })
      expect(r).toMatchObject({ ok: false, error: { code: 'ERR_NOT_MEMBER' } })
    }
    await steps.stop()
    expect(await dbSnapshot(pg)).toBe(before)
  })
})

describe('fuzzing gossip', () => {
  const lab = new MeshLab()
  let a: Mesh
  let b: Mesh
  let c: Mesh
  beforeAll(async () => {
    await lab.setup()
    a = await lab.started()
    b = await lab.started({ bootstrap: a.addresses() })
    c = await lab.started({ bootstrap: a.addresses() })
    await waitFor(() => fullMesh([a, b, c]), 10_000, 'three meshed nodes')
  })
  afterAll(async () => {
    await lab.teardown()
  })

  it(`rejects 2000 generated gossip messages and keeps delivering good ones (seed ${SEED})`, async () => {
    const received: unknown[] = []
    b.subscribe('conflicts', (m) => received.push(m.payload))
    b.setClaimCheck('conflicts', () => true)
    const rejected = () => Object.values(b.counters().gossipRejected).reduce((x, y) => x + y, 0)
    const before = rejected()
    const topics = ['membership', 'conflicts'] as const
    for (let n = 0; n < 2000; n++) {
      const payload = rnd() < 0.5 ? JSON.stringify(randomJson()) : randomString()
      await a.publishRaw(pick(topics), new TextEncoder().encode(payload))
    }
    // gossipsub's scoring graylists a sender of invalid messages after a while, so not every
    // one is even validated; what matters is that they are rejected, counted, never delivered
    await waitFor(() => rejected() > before + 50, 20_000, 'rejections counted')
    // let the backlog drain: the count stops growing (the same in two reads 500 ms apart);
    // a generous deadline: this suite runs beside others on a loaded two-core machine
    let last = -1
    await poll(
      () => {
        const now = rejected()
        const same = now === last
        last = now
        return same
      },
      30_000,
      'the rejection count to stop growing',
      500,
    )
    expect(received).toEqual([])
    // a well-behaved member still gets through
    const good = conflictEvent(2, 'trktr_sub_2_1')
    // published again (a fresh message) every 2 s until it arrives: on a loaded machine the
    // mesh may have no peer for the topic at the moment of one publish
    let tries = 0
    await waitFor(
      () => {
        if (received.length === 0 && tries++ % 200 === 0)
          void c
            .publish('conflicts', { ...good, occurred: new Date(Date.now() + tries).toISOString() })
            .catch(() => undefined)
        return received.length >= 1
      },
      30_000,
      'a good message after the garbage',
    )
    expect(received.every((m) => (m as { nodeId?: number }).nodeId === 2)).toBe(true)
  }, 120_000)
})

// What an apply worker logs on a conflict, for origin pg_<oid>, in several languages and word
// orders, then bent a little: the forger's text, never the apply worker's.
function forgedContext(oid: number): string {
  const origin = pick([`pg_${oid}`, `pg_${oid}`, `pg_${oid}_16384`, `pg_${int(100_000)}`])
  const type = pick(['INSERT', 'UPDATE', 'DELETE', 'BEGIN', 'COMMIT', 'STREAM START'])
  const hex = (n: number) => int(n).toString(16).toUpperCase()
  const lsn = `${hex(16)}/${hex(2 ** 32)}`
  const xid = int(1_000_000)
  const line = pick([
    `processing remote data for replication origin "${origin}" during message type "${type}" for replication target relation "public.t" in transaction ${xid}, finished at ${lsn}`,
    `processing remote data for replication origin "${origin}" during message type "${type}" in transaction ${xid}, finished at ${lsn}`,
    `Verarbeiten empfangener Daten für Replication-Origin »${origin}« bei Nachrichtentyp »${type}« für Replikationszielrelation »public.t« in Transaktion ${xid}, beendet bei ${lsn}`,
    `${lsn}で終了したトランザクション${xid}中、レプリケーション先リレーション"public.t"に対するメッセージタイプ"${type}"でレプリケーション基点"${origin}"のリモートからのデータを処理中`,
    `procesando datos remotos de origen de replicación «${origin}» durante el mensaje de tipo «${type}» en la transacción ${xid}, concluida en ${lsn}`,
    `"${origin}" "${type}" "public.t" ${xid} ${lsn}`,
  ])
  const r = rnd()
  if (r < 0.5) return line
  if (r < 0.7) return `${randomString()}${line}`
  if (r < 0.85) return `${line}${randomString()}`
  return line.replaceAll('"', pick(['»', '«', "'", '""', '']))
}

const APPLY_WORKER = 'logical replication apply worker'

// a whole record as the server writes one for an apply worker, to be smuggled into a field of
// the forger's own record (jsonlog escapes it, csvlog doubles its quotes)
function forgedRecordLine(
  format: 'jsonlog' | 'csvlog',
  r: { severity: string; state?: string; message: string; context?: string },
): string {
  const at = '2026-12-02 06:42:50.218 UTC'
  const pid = 4242
  if (format === 'jsonlog') {
    return JSON.stringify({
      timestamp: at,
      pid,
      error_severity: r.severity,
      ...(r.state ? { state_code: r.state } : {}),
      message: r.message,
      ...(r.context ? { context: r.context } : {}),
      backend_type: APPLY_WORKER,
    })
  }
  const q = (v: string | undefined) => (v === undefined ? '' : `"${v.replaceAll('"', '""')}"`)
  const cols = Array.from({ length: 26 }, () => '')
  cols[0] = at
  cols[3] = String(pid)
  cols[11] = r.severity
  cols[12] = r.state ?? '00000'
  cols[13] = q(r.message)
  cols[18] = q(r.context)
  cols[23] = q(APPLY_WORKER)
  return cols.join(',')
}

function disabledLine(sub: string): string {
  return pick([
    `subscription "${sub}" has been disabled because of an error`,
    `Subskription »${sub}« wurde wegen eines Fehlers deaktiviert`,
    `la suscripción «${sub}» ha sido inhabilitada debido a un error`,
    `'${sub}'`,
    `„${sub}“`,
  ])
}

function forgedText(oid: number, sub: string): string {
  const ctx = forgedContext(oid)
  const format = pick(['jsonlog', 'csvlog'] as const)
  const records = () =>
    [
      forgedRecordLine(format, {
        severity: 'ERROR',
        state: pick(['23505', '08006']),
        message: 'duplicate key value violates unique constraint "t_pkey"',
        context: ctx,
      }),
      forgedRecordLine(format, { severity: 'LOG', message: disabledLine(sub) }),
    ].join('\n')
  return pick([
    ctx,
    `${randomString()}\n${ctx}\n${randomString()}`,
    `\n${records()}\n`,
    `"\n${records()}\n"`,
    `${randomString()}\n${records()}`,
    randomString(),
  ])
}

const FORGED_STATES = ['23505', '23514', '23502', '23P01', '08006', '08003', '57P01', 'P0001']

function forgedEvents(oid: number, sub: string): ForgedEvent[] {
  const text = () => forgedText(oid, sub)
  const events: ForgedEvent[] = []
  switch (int(5)) {
    case 0:
      events.push({
        kind: 'raise',
        sqlState: pick(FORGED_STATES),
        message: text(),
        ...(rnd() < 0.6 ? { detail: text() } : {}),
        ...(rnd() < 0.4 ? { hint: text() } : {}),
      })
      break
    case 1:
      events.push({ kind: 'execute', sqlState: pick(FORGED_STATES), lines: text() })
      break
    case 2:
      events.push({ kind: 'check', value: text() })
      break
    case 3:
      events.push({ kind: 'statement', text: text() })
      break
    default:
      events.push({ kind: 'warning', message: text() })
  }
  // what an apply worker logs right after its error: the subscription's name
  if (rnd() < 0.6) events.push({ kind: 'warning', message: disabledLine(sub) })
  return events
}

describe('fuzzing the resolver with log lines an unprivileged user writes (issue 8, item 4)', () => {
  const SUB = 'trktr_sub_0_1'
  let pg: PgServer
  let local: LocalNode
  let forger: Forger
  let oid: number
  const asArbiter = { dbname: TUTORIAL_DB, user: ARBITER_ROLE, password: ARBITER_PASSWORD }

  beforeAll(async () => {
    ;[pg] = (await startServers(1, () => ({ name: 'fuzzlog', fast: true }))) as [PgServer]
    await prepareTutorialNode(pg)
    local = new LocalNode({ nodeId: 0, conninfo: pg.conninfo(asArbiter), log: silentLogger() })
    await local.start()
    await local.initNode()
    // the arbiter's subscription to node 1 as an operator leaves it: disabled (node 1 need not
    // exist; the arbiter could enable it and set its skip LSN)
    await pg.query(
      `CREATE SUBSCRIPTION ${SUB} CONNECTION 'host=127.0.0.1 port=1 dbname=none password=x'
       PUBLICATION ${PUBLICATION} WITH (connect = false, slot_name = '${SUB}')`,
      [],
      asArbiter,
    )
    const [s] = await pg.query(
      `SELECT oid::int8 AS oid FROM pg_subscription WHERE subname = $1`,
      [SUB],
      asArbiter,
    )
    oid = Number(s?.oid)
    await createForgerRole(pg)
    forger = await Forger.connect(pg, TUTORIAL_DB)
  })

  afterAll(async () => {
    await forger?.close()
    await local?.stop()
    await pg?.destroy()
  })

  it(`acts on none of 200 generated rounds of forged apply-worker lines (seed ${SEED})`, async () => {
    const resolver = new Resolver({
      local,
      strategy: 'skip',
      intervalMs: 3_600_000,
      log: silentLogger(),
    })
    expect(await resolver.tick()).toMatch(
      /^no action: 1 disabled, no new failure \(.*: no failure logged,/,
    )
    const before = await dbSnapshot(pg)
    const verdicts: string[] = []
    for (let n = 0; n < 200; n++) {
      for (const e of forgedEvents(oid, SUB)) await forger.forge(e)
      // now and then a cycle in the middle of it
      if (rnd() < 0.1) verdicts.push(await resolver.tick())
    }
    const marker = `fuzzdone${SEED}x${Date.now()}`
    await forger.forge({ kind: 'warning', message: marker })
    await waitLogged(pg, TUTORIAL_DB, marker)
    for (let i = 0; i < 4; i++) verdicts.push(await resolver.tick())
    await resolver.stop()

    const [sub] = await pg.query(
      `SELECT subenabled AS enabled, subskiplsn::text AS skip FROM pg_subscription
       WHERE subname = $1`,
      [SUB],
      asArbiter,
    )
    expect(sub).toEqual({ enabled: false, skip: '0/0' })
    expect(await dbSnapshot(pg)).toBe(before)
    // the forged lines are not even a failure logged for the subscription
    expect(new Set(verdicts.map((v) => v.replace(/, apply errors.*/, '')))).toEqual(
      new Set([`no action: 1 disabled, no new failure (${SUB}: no failure logged`]),
    )

    // the same server's logs read directly, in both formats: every record parses (no smuggled
    // line splits a record), both formats agree, and none of it is an apply worker's failure
    const messages: string[][] = []
    for (const format of ['jsonlog', 'csvlog'] as const) {
      const [file] = await pg.query(
        `SELECT pg_read_binary_file(pg_current_logfile($1)) AS b`,
        [format],
        { dbname: TUTORIAL_DB },
      )
      const parser = new LogParser(format)
      const records = parser.feed(file?.b as Buffer)
      expect(parser.skipped, format).toBe(0)
      expect(
        records.some((r) => r.backendType === APPLY_WORKER),
        format,
      ).toBe(false)
      const index = new FailureIndex()
      index.add(records, [SUB])
      expect(index.latestFor(SUB, oid), format).toBeUndefined()
      const fromClients = records.filter((r) => r.backendType === 'client backend')
      messages.push(fromClients.map((r) => r.message))
    }
    expect(messages[1]).toEqual(messages[0])
  })
})
