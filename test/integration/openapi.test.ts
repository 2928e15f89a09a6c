// Real answers against the OpenAPI document the arbiter serves (issue 9): every answer of a
// standalone node (in-process, real PostgreSQL) and of a two-node mesh (real arbiter
// processes) has a status the document lists for its route, and a body the schema it names
// accepts, strictly: a field the document does not declare fails the test.
import type { FastifyInstance } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { apiRoutes } from '../../src/api/routes/index.js'
import { buildApp } from '../../src/api/server.js'
import { silentLogger } from '../../src/log.js'
import { LocalNode } from '../../src/postgres/local.js'
import { call, MeshCluster, TESTING_ENV, waitFor } from '../fixtures/mesh-cluster.js'
import { nonconformity, type OpenApiDoc } from '../fixtures/openapi.js'
import { type PgServer, startServers } from '../fixtures/pg.js'
import {
  ARBITER_PASSWORD,
  ARBITER_ROLE,
  prepareTutorialNode,
  REPTEST,
  TUTORIAL_DB,
} from '../fixtures/tutorial.js'

interface Answer {
  status: number
  body: unknown
}

/** Records what does not conform; the test expects none. */
class Conformance {
  readonly problems: string[] = []
  constructor(private readonly doc: OpenApiDoc) {}

  check(method: string, url: string, status: number, type: string | undefined, text: string) {
    const body = !type?.includes('json') ? text : text === '' ? undefined : JSON.parse(text)
    const p = nonconformity(this.doc, method, url, status, type, body)
    if (p) this.problems.push(p)
    return { status, body }
  }
}

describe('a standalone node answers as its document says', () => {
  let pg: PgServer
  let local: LocalNode
  let app: FastifyInstance
  let c: Conformance

  beforeAll(async () => {
    ;[pg] = (await startServers(1, () => ({ name: 'oapi-solo', fast: true }))) as [PgServer]
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
    app = buildApp({
      apiKey: 'k',
      publicEndpoints: true,
      log: silentLogger(),
      publicPaths: ['/metrics'],
      routes: apiRoutes({
        local,
        nodeId: 0,
        cluster: undefined,
        healthReasons: () => local.healthReasons(),
        metrics: { contentType: 'text/plain; version=0.0.4; charset=utf-8', text: async () => '' },
      }),
      health: async () => ({ ok: true, detail: { node: 0, postgres: 'reachable' } }),
    })
    await app.ready()
    c = new Conformance(app.swagger() as unknown as OpenApiDoc)
  })
  afterAll(async () => {
    await app?.close()
    await local?.stop()
    await pg?.destroy()
  })

  const ask = async (method: string, url: string, payload?: unknown): Promise<Answer> => {
    const r = await app.inject({
      method: method as 'GET',
      url,
      headers: {
        'x-api-key': 'k',
        ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(payload === undefined ? {} : { payload: JSON.stringify(payload) }),
    })
    return c.check(method, url, r.statusCode, r.headers['content-type'] as string, r.body)
  }

  it('through the TRAKTOR tutorial, its refusals, and the cluster routes it does not serve', async () => {
    const table = '/v1/arbiter/replicaset/multimaster.reptest'
    expect((await ask('PUT', table)).status).toBe(409) // not initialised
    expect((await ask('PUT', '/v1/arbiter/control')).status).toBe(201)
    expect((await ask('PUT', '/v1/arbiter/control')).status).toBe(201)
    expect((await ask('GET', '/v1/arbiter/status')).body).toMatchObject({ healthy: true })
    expect((await ask('PUT', table)).status).toBe(201)
    expect((await ask('GET', '/v1/arbiter/replicaset/status')).status).toBe(200)
    const committed = await ask('PATCH', '/v1/arbiter/replicaset')
    expect(committed.body).toMatchObject({ added: ['multimaster.reptest'] })
    expect((await ask('DELETE', table)).status).toBe(200)
    expect((await ask('PATCH', '/v1/arbiter/replicaset')).status).toBe(200)
    expect((await ask('GET', '/v1/arbiter/resolution/history')).status).toBe(200)
    expect((await ask('PUT', '/v1/arbiter/replicaset/nodot')).status).toBe(400)
    expect(
      (await ask('PUT', '/v1/arbiter/subscription/control', { inbound_node: -1 })).status,
    ).toBe(400)
    const dropped = await ask('DELETE', '/v1/arbiter/subscription/control', { inbound_node: 7 })
    expect(dropped.body).toMatchObject({ subscription: 'trktr_sub_0_7', dropped: false })
    expect((await ask('GET', '/v1/cluster/status')).status).toBe(409)
    expect((await ask('PUT', '/v1/cluster/replicaset/multimaster.reptest')).status).toBe(409)
    const rpc = await ask('POST', '/rpc', { jsonrpc: '2.0', method: 'replicaset.list', id: 1 })
    expect(rpc.body).toMatchObject({ error: { code: -32003 } })
    expect((await ask('GET', '/healthz')).status).toBe(200)
    expect((await ask('GET', '/metrics')).status).toBe(200)
    expect((await ask('GET', '/docs/openapi.json')).status).toBe(200)
    expect((await ask('DELETE', '/v1/arbiter/control')).status).toBe(200)
    expect(c.problems).toEqual([])
  })
})

describe('a mesh answers as its document says', () => {
  let mesh: MeshCluster
  let c: Conformance

  const T = (name: string, extra = '') =>
    `CREATE TABLE demo.${name} (id int PRIMARY KEY, payload text${extra}); ALTER TABLE demo.${name} OWNER TO traktor_arbiter`

  beforeAll(async () => {
    mesh = await MeshCluster.create(2, 'oapi')
    for (const i of [0, 1]) await mesh.q(i, T('t'))
    await mesh.q(0, T('bad'))
    await mesh.q(1, T('bad', ', extra int'))
    await Promise.all([mesh.start(0, { testing: { routes: true } }, TESTING_ENV), mesh.start(1)])
    await mesh.waitMeshed([0, 1])
    await mesh.waitSubscribed([0, 1])
    // the document as the arbiter serves it (public, like /healthz)
    const r = await fetch(`${mesh.api(0).url}/docs/openapi.json`)
    c = new Conformance((await r.json()) as OpenApiDoc)
  })
  afterAll(async () => {
    await mesh?.destroy()
  })

  const ask = async (id: number, method: string, url: string, body?: unknown): Promise<Answer> => {
    const a = mesh.api(id)
    const r = await fetch(`${a.url}${url}`, {
      method,
      headers: {
        'X-API-KEY': a.apiKey,
        ...(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    })
    return c.check(
      method,
      url,
      r.status,
      r.headers.get('content-type') ?? undefined,
      await r.text(),
    )
  }
  const rpc = (id: number, method: string, params?: unknown) =>
    ask(id, 'POST', '/rpc', { jsonrpc: '2.0', method, id: 1, ...(params ? { params } : {}) })

  it('through every cluster route and method', async () => {
    expect((await ask(0, 'GET', '/v1/cluster/status')).body).toMatchObject({ healthy: true })
    expect((await ask(1, 'GET', '/v1/cluster/nodes')).status).toBe(200)
    expect((await ask(0, 'PUT', '/v1/cluster/replicaset/demo.t')).status).toBe(201)
    expect((await ask(1, 'PUT', '/v1/cluster/replicaset/demo.t')).body).toMatchObject({
      outcome: 'unchanged',
    })
    expect((await ask(1, 'GET', '/v1/cluster/replicaset')).status).toBe(200)
    const aborted = await ask(0, 'PUT', '/v1/cluster/replicaset/demo.bad')
    expect(aborted.body).toMatchObject({ error: 'ERR_ABORTED', outcome: 'aborted' })
    expect((await ask(0, 'PUT', '/v1/cluster/replicaset/nodot')).status).toBe(400)

    // a conflict on each side, so that the history has rows to check
    await mesh.cut([
      [0, 1],
      [1, 0],
    ])
    await mesh.q(0, `INSERT INTO demo.t VALUES (500, 'zero')`)
    await mesh.q(1, `INSERT INTO demo.t VALUES (500, 'one')`)
    await mesh.heal([
      [0, 1],
      [1, 0],
    ])
    await waitFor(
      async () => {
        const r = await call(mesh.api(0), 'GET', '/v1/cluster/history')
        const rows = (r.json?.resolutions ?? []) as Array<{
          node: number
          nodes?: number[]
          resolved: unknown
        }>
        // a row-level resolution (resolver lww, the mesh default) is one row for every node
        // that recorded it
        const nodes = rows.filter((x) => x.resolved).flatMap((x) => x.nodes ?? [x.node])
        return new Set(nodes).size === 2
      },
      30_000,
      'a resolved conflict on both nodes',
    )
    const history = await ask(1, 'GET', '/v1/cluster/history')
    // one conflict seen on both nodes: one row-level resolution (with `nodes`), or more
    expect((history.body as { resolutions: unknown[] }).resolutions.length).toBeGreaterThan(0)
    expect((await ask(0, 'GET', '/v1/arbiter/resolution/history')).status).toBe(200)

    for (const m of ['cluster.status', 'cluster.nodes', 'replicaset.list', 'history.list']) {
      expect((await rpc(1, m)).body, m).toHaveProperty('result')
    }

    // the check and the repair (issue 11): a row changed on node 1 only (a session under an
    // origin is not published to origin = none subscribers), found, repaired, in the ledger
    await mesh.q(
      1,
      `SELECT pg_replication_origin_create('oapi_local');
       SELECT pg_replication_origin_session_setup('oapi_local');
       INSERT INTO demo.t VALUES (900, 'node 1 only');
       SELECT pg_replication_origin_session_reset()`,
    )
    expect((await ask(0, 'GET', '/v1/cluster/check')).status).toBe(200)
    const differs = await ask(0, 'GET', '/v1/cluster/check/demo.t')
    expect(differs.body).toMatchObject({
      verdict: 'differs',
      tables: [{ differing_rows: 1, keys: [{ key: { id: 900 }, winner: 1 }] }],
    })
    expect((await rpc(1, 'cluster.check')).body).toHaveProperty('result.tables')
    expect((await rpc(1, 'cluster.check', { table: 'demo.t' })).body).toHaveProperty(
      'result.verdict',
      'differs',
    )
    expect((await ask(0, 'POST', '/v1/cluster/check/nodot/repair')).status).toBe(400)
    expect((await ask(0, 'POST', '/v1/cluster/check/demo.t/repair?from=x')).status).toBe(400)
    expect((await ask(0, 'POST', '/v1/cluster/check/demo.nope/repair')).body).toMatchObject({
      error: 'ERR_NOT_REPLICATED',
    })
    const repaired = await ask(0, 'POST', '/v1/cluster/check/demo.t/repair', { from: 1 })
    expect(repaired.body).toMatchObject({ repaired_rows: 1, after: { verdict: 'consistent' } })
    expect((await rpc(1, 'cluster.repair', { table: 'demo.t' })).body).toMatchObject({
      result: { repaired_rows: 0 },
    })
    const ledger = await ask(0, 'GET', '/v1/cluster/history')
    expect((ledger.body as { resolutions: unknown[] }).resolutions).toContainEqual(
      expect.objectContaining({
        node: 0,
        kind: 'repair',
        action: 'repair',
        resolution: 'insert',
        winner: expect.objectContaining({ node: 1, image: { id: 900, payload: 'node 1 only' } }),
      }),
    )
    expect((await rpc(1, 'replicaset.add', { table: 'demo.t' })).body).toMatchObject({
      result: { outcome: 'unchanged' },
    })
    expect((await rpc(0, 'replicaset.add', { table: 'demo.bad' })).body).toMatchObject({
      error: { code: -32001, data: { outcome: 'aborted' } },
    })
    expect((await rpc(0, 'replicaset.remove', { table: 'demo.t' })).body).toMatchObject({
      result: { outcome: 'committed', op: 'remove' },
    })

    // the node routes: this node's status, and the changes the mesh owns refused
    expect((await ask(1, 'GET', '/v1/arbiter/status')).status).toBe(200)
    expect((await ask(1, 'PUT', '/v1/arbiter/control')).body).toMatchObject({
      error: 'ERR_MESH_MODE',
    })
    expect((await ask(0, 'GET', '/healthz')).status).toBe(200)
    expect((await ask(0, 'GET', '/metrics')).status).toBe(200)

    // the test-only routes, then a removal and a re-admission
    expect((await ask(0, 'PUT', '/v1/testing/partition', { nodes: [1] })).status).toBe(200)
    expect((await ask(0, 'DELETE', '/v1/testing/partition')).status).toBe(200)
    await mesh.waitMeshed([0, 1])
    expect((await ask(0, 'DELETE', '/v1/cluster/nodes/0')).status).toBe(400)
    expect((await ask(0, 'DELETE', '/v1/cluster/nodes/9')).status).toBe(404)
    expect((await ask(0, 'DELETE', '/v1/cluster/nodes/1')).body).toMatchObject({ node: 1 })
    expect((await ask(0, 'PUT', '/v1/cluster/nodes/1')).body).toMatchObject({ node: 1 })
    expect(c.problems).toEqual([])
  }, 180_000)
})
