// Fault 6: fuzzing. Thousands of generated requests to every REST route and to JSON-RPC, and
// thousands of generated gossip messages, RPC frames and RPC calls: no crash, every bad request
// a 4xx or a JSON-RPC error, and nothing changed in the database. A seeded generator (the seed
// is printed on failure) instead of a library: the cases are plain data.
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { arbiterRoutes } from '../../src/api/routes/arbiter.js'
import { clusterRoutes } from '../../src/api/routes/cluster.js'
import { jsonRpcRoutes } from '../../src/api/routes/jsonrpc.js'
import { buildApp } from '../../src/api/server.js'
import { rpcHandler } from '../../src/cluster/rpc-handlers.js'
import { Steps } from '../../src/cluster/steps.js'
import { silentLogger } from '../../src/log.js'
import type { Mesh } from '../../src/mesh/node.js'
import { LocalNode } from '../../src/postgres/local.js'
import { fullMesh, MeshLab, waitFor } from '../fixtures/mesh-nodes.js'
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
    const steps = new Steps({ local, conninfo: 'host=127.0.0.1', nodeId: 0, log: silentLogger() })
    const handler = rpcHandler({
      local,
      steps,
      log: silentLogger(),
      nodeStatus: async () => ({}),
      proposalStatus: async () => ({ decision: 'unknown' }),
      removeNode: async () => {
        throw new Error('not in this test')
      },
    })
    const methods = [
      'proposal.prepare',
      'proposal.step',
      'proposal.abort',
      'proposal.status',
      'replicaset.get',
      'node.remove',
      'nope',
    ]
    for (let n = 0; n < 3000; n++) {
      const r = await handler('12D3KooWfuzz', { method: pick(methods), params: randomJson() })
      expect(typeof r.ok).toBe('boolean')
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
    const topics = ['membership', 'proposals', 'conflicts'] as const
    for (let n = 0; n < 2000; n++) {
      const payload = rnd() < 0.5 ? JSON.stringify(randomJson()) : randomString()
      await a.publishRaw(pick(topics), new TextEncoder().encode(payload))
    }
    // gossipsub's scoring graylists a sender of invalid messages after a while, so not every
    // one is even validated; what matters is that they are rejected, counted, never delivered
    await waitFor(() => rejected() > before + 50, 20_000, 'rejections counted')
    // let the backlog drain (the count stops growing); generous deadlines: this suite runs
    // beside others on a loaded two-core machine
    let last = -1
    const settled = async () => {
      const deadline = Date.now() + 30_000
      for (;;) {
        const now = rejected()
        if (now === last || Date.now() > deadline) return
        last = now
        await new Promise((r) => setTimeout(r, 500))
      }
    }
    await settled()
    expect(received).toEqual([])
    // a well-behaved member still gets through
    const good = {
      v: 1,
      kind: 'conflict',
      nodeId: 2,
      subscription: 'trktr_sub_2_1',
      lsn: '0/1',
      relation: null,
      sqlState: '23505',
      reason: null,
      action: 'skip',
      resolved: null,
      occurred: new Date().toISOString(),
    }
    await c.publish('conflicts', good)
    await waitFor(() => received.length === 1, 15_000, 'a good message after the garbage')
  })
})
