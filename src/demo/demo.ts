// `traktor demo`: the embedded default. N PostgreSQL 17 servers and N arbiters in mesh mode on
// loopback, a demo table added to the replicaset with ONE cluster call, a row written on every
// node and shown on every node, then what to try next. Ctrl-C (or --exit after the checks)
// stops everything and removes every temporary file.
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Arbiter } from '../arbiter.js'
import { configFromObject } from '../config/load.js'
import type { Config } from '../config/types.js'
import { createLogger } from '../log.js'
import { writePskFile } from '../mesh/keys.js'
import {
  enabledSubscriptions,
  greetings,
  prepareDemoServer,
  writeGreeting,
} from '../postgres/demo-db.js'
import { destroyServers, type EmbeddedPostgres, startServers } from '../postgres/embedded.js'
import { freePort } from '../postgres/free-port.js'
import { waitFor } from '../wait.js'
import { hints } from './hints.js'
import { type Out, step, table } from './output.js'

export interface DemoOptions {
  nodes: number
  exit: boolean
  out: Out
}

const ROLE = 'traktor_arbiter'
const DB = 'demo'
const TABLE = 'demo.greetings' as const

export interface DemoNode {
  id: number
  pg: EmbeddedPostgres
  arbiter: Arbiter
  apiUrl: string
  password: string
}

/** Run the demo; resolves with the exit code. */
export async function runDemo(opts: DemoOptions): Promise<number> {
  const { out } = opts
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'traktor-demo-'))
  const apiKey = randomBytes(9).toString('base64url')
  const password = randomBytes(9).toString('base64url')
  const logFile = path.join(dir, 'arbiters.log')
  let pgs: EmbeddedPostgres[] = []
  const nodes: DemoNode[] = []
  let interrupted = false
  const onSignal = () => {
    interrupted = true
    out.line('\nstopping...')
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  let code = 0
  try {
    out.line(
      `traktor demo: ${opts.nodes} PostgreSQL 17 servers and ${opts.nodes} arbiters on 127.0.0.1\n` +
        'The demo servers run with fsync = off and synchronous_commit = off (fast, for trying\n' +
        'things out): a crash of this machine can lose their data. Never use them for data you keep.\n',
    )
    pgs = await step(out, `start ${opts.nodes} PostgreSQL servers`, () =>
      startServers(opts.nodes, (i) => ({ name: `demo${i}`, fast: true })),
    )
    await step(out, 'create the database, the arbiter role and the demo table on each', () =>
      Promise.all(pgs.map((pg) => prepare(pg, password))),
    )
    const log = createLogger({ level: 'info', destination: logFile })
    await step(out, `start ${opts.nodes} arbiters in mesh mode (logs: ${logFile})`, async () => {
      const psk = path.join(dir, 'swarm.key')
      await writePskFile(psk)
      const meshPorts = await Promise.all(pgs.map(() => freePort()))
      for (const [i, pg] of pgs.entries()) {
        const apiPort = await freePort()
        const config = demoConfig(i, pg, password, apiKey, apiPort, meshPorts, dir, psk)
        const arbiter = new Arbiter({ config, log: log.child({ nodeId: i }) })
        nodes.push({ id: i, pg, arbiter, apiUrl: `http://127.0.0.1:${apiPort}`, password })
        await arbiter.start()
      }
    })
    await step(out, 'wait until every arbiter sees every other and every subscription runs', () =>
      waitMeshed(nodes, apiKey),
    )
    const added = await step(out, `add ${TABLE} to the replicaset with one cluster call`, () =>
      clusterPut(nodes[0] as DemoNode, apiKey),
    )
    out.line(`    PUT ${(nodes[0] as DemoNode).apiUrl}/v1/cluster/replicaset/${TABLE} → ${added}`)
    await step(out, 'write one row on every node', () =>
      Promise.all(nodes.map((n) => writeGreeting(n.pg, DB, n.id))),
    )
    const seen = await step(out, 'wait until every node holds every row', () => waitRows(nodes))
    out.line('')
    table(out, ['node', ...nodes.map((n) => `row from node ${n.id}`)], seen)
    out.line('')
    out.line(hints({ nodes, apiKey, password, db: DB, role: ROLE, table: TABLE, logFile }))
    if (opts.exit) {
      out.line(
        'demo verified: every node holds every row, identical in every column. Stopping (--exit).',
      )
    } else {
      out.line('The cluster runs until Ctrl-C.')
      await new Promise<void>((resolve) => {
        const poll = setInterval(() => {
          if (interrupted) {
            clearInterval(poll)
            resolve()
          }
        }, 100)
      })
    }
  } catch (err) {
    out.error(`\ndemo failed: ${(err as Error).message}`)
    out.error(`(arbiter logs were in ${logFile})`)
    code = 1
  } finally {
    await step(
      out,
      'stop the arbiters and PostgreSQL servers, remove temporary files',
      async () => {
        for (const n of [...nodes].reverse()) await n.arbiter.stop().catch(() => undefined)
        await destroyServers(pgs)
        fs.rmSync(dir, { recursive: true, force: true })
      },
    ).catch(() => undefined)
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
  return code
}

async function prepare(pg: EmbeddedPostgres, password: string): Promise<void> {
  await prepareDemoServer(pg, { db: DB, role: ROLE, password, table: TABLE })
}

/** A demo node's config, as a user would write it in a .json file, read through the schema. */
function demoConfig(
  i: number,
  pg: EmbeddedPostgres,
  password: string,
  apiKey: string,
  apiPort: number,
  meshPorts: number[],
  dir: string,
  psk: string,
): Config {
  return configFromObject(
    {
      nodeId: i,
      postgres: pg.conninfo({ dbname: DB, user: ROLE, password }),
      advertise: { postgres: pg.conninfo({ dbname: DB, user: ROLE }) },
      peerPassword: password,
      api: { listen: `127.0.0.1:${apiPort}`, apiKey, publicEndpoints: true },
      // TRAKTOR's resolver: the demo shows a conflict skipped and recorded
      resolver: 'skip',
      mesh: {
        listen: [`/ip4/127.0.0.1/tcp/${meshPorts[i]}`],
        bootstrap: i === 0 ? [] : [`/ip4/127.0.0.1/tcp/${meshPorts[0]}`],
        identityFile: `peer${i}.key`,
        pskFile: psk,
        cluster: 'demo',
      },
    },
    dir,
    'traktor demo',
  ).config
}

async function get(url: string, apiKey: string): Promise<unknown> {
  const r = await fetch(url, {
    headers: { 'X-API-KEY': apiKey },
    signal: AbortSignal.timeout(5000),
  })
  return await r.json()
}

async function waitMeshed(nodes: DemoNode[], apiKey: string): Promise<void> {
  for (const n of nodes) {
    await waitFor(
      async () => {
        const status = (await get(`${n.apiUrl}/v1/cluster/nodes`, apiKey)) as { nodes: unknown[] }
        const ready = (status.nodes as Array<{ state: string; join_state: string }>).filter(
          (m) => m.state === 'alive' && m.join_state === 'ready',
        )
        if (ready.length !== nodes.length) return undefined
        return (await enabledSubscriptions(n.pg, DB)) === nodes.length - 1 ? true : undefined
      },
      30_000,
      `node ${n.id} to see every member ready and subscribe to each`,
    )
  }
}

async function clusterPut(n: DemoNode, apiKey: string): Promise<string> {
  const r = await fetch(`${n.apiUrl}/v1/cluster/replicaset/${TABLE}`, {
    method: 'PUT',
    headers: { 'X-API-KEY': apiKey },
    signal: AbortSignal.timeout(15_000),
  })
  const body = (await r.json()) as {
    outcome?: string
    version?: number
    duration_ms?: number
    message?: string
  }
  if (r.status >= 300) throw new Error(`the cluster refused: ${body.message ?? r.status}`)
  return `${r.status} ${body.outcome} (replicaset version ${body.version}, ${body.duration_ms} ms)`
}

async function waitRows(nodes: DemoNode[]): Promise<string[][]> {
  return await waitFor(
    async () => {
      const grid: string[][] = []
      const md5s = new Set<string>()
      for (const n of nodes) {
        const { ids, md5 } = await greetings(n.pg, DB)
        md5s.add(md5)
        grid.push([`node ${n.id}`, ...nodes.map((w) => (ids.has(`hello-${w.id}`) ? 'yes' : 'no'))])
      }
      // every row everywhere, and the same rows (every column) on every node
      const all = grid.every((row) => row.slice(1).every((c) => c === 'yes'))
      return all && md5s.size === 1 ? grid : undefined
    },
    15_000,
    'every row on every node',
  )
}
