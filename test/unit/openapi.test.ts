// The OpenAPI document is generated from the routes (issue 9): every route the arbiter
// registers is in it and nothing else, it is a valid OpenAPI 3.1 document, it says which
// routes need the key, and the schemas only describe (they never rewrite an answer or refuse
// a body). No database: the routes are registered, and answer as the document says when the
// database is not there.
import { Validator } from '@seriousme/openapi-schema-validator'
import { afterEach, describe, expect, it } from 'vitest'
import { doc } from '../../src/api/openapi.js'
import type { RouteGroup } from '../../src/api/server.js'
import { ErrorBody, SubscribeRequest } from '../../src/api/shapes/index.js'
import { APP_KEY, apiApp } from '../fixtures/api-app.js'
import { nonconformity, type OpenApiDoc } from '../fixtures/openapi.js'

const KEY = APP_KEY
const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const stop of cleanup.splice(0).reverse()) await stop()
})

async function arbiterApp(opts: Parameters<typeof apiApp>[0] = {}) {
  const a = await apiApp(opts)
  cleanup.push(a.close)
  return a
}

/** fastify's "/v1/cluster/nodes/:id" as a document path; a wildcard matches any {param} */
function documented(doc: OpenApiDoc, method: string, url: string): boolean {
  const m = method.toLowerCase()
  // "/docs/" is the page at "/docs" (fastify registers both)
  const template = url.replace(/:(\w+)/g, '{$1}').replace(/(.)\/$/, '$1')
  if (template.endsWith('*')) {
    const prefix = template.slice(0, -1)
    return Object.entries(doc.paths).some(
      ([p, ops]) => p.startsWith(prefix) && /^\{[^/]+\}$/.test(p.slice(prefix.length)) && ops[m],
    )
  }
  const ops = doc.paths[template]
  // fastify answers HEAD for every GET; the document lists the GET
  return Boolean(ops?.[m] ?? (m === 'head' ? ops?.get : undefined))
}

describe('the OpenAPI document', () => {
  it('lists every registered route, and only those', async () => {
    const { routes, doc } = await arbiterApp()
    expect(routes.length).toBeGreaterThan(30)
    const missing = routes.filter((r) => !documented(doc, r.method, r.url))
    expect(missing).toEqual([])
    // the other way round: nothing documented that is not registered
    const registered = new Set(
      routes.map((r) => `${r.method.toLowerCase()} ${r.url.replace(/:(\w+)/g, '{$1}')}`),
    )
    const extra = Object.entries(doc.paths).flatMap(([p, ops]) =>
      Object.keys(ops)
        .filter((m) => !registered.has(`${m} ${p}`) && !p.startsWith('/docs/static/{'))
        .map((m) => `${m} ${p}`),
    )
    expect(extra).toEqual([])
    // the ones /docs used to leave out
    for (const [method, path] of [
      ['get', '/v1/cluster/status'],
      ['get', '/v1/cluster/nodes'],
      ['delete', '/v1/cluster/nodes/{id}'],
      ['put', '/v1/cluster/nodes/{id}'],
      ['get', '/v1/cluster/replicaset'],
      ['put', '/v1/cluster/replicaset/{relation}'],
      ['delete', '/v1/cluster/replicaset/{relation}'],
      ['get', '/v1/cluster/history'],
      ['get', '/v1/cluster/check'],
      ['get', '/v1/cluster/check/{relation}'],
      ['post', '/v1/cluster/check/{relation}/repair'],
      ['post', '/rpc'],
      ['get', '/metrics'],
      ['get', '/healthz'],
      ['get', '/docs'],
      ['get', '/docs/openapi.json'],
      ['put', '/v1/testing/partition'],
    ] as const) {
      expect(doc.paths[path]?.[method], `${method} ${path}`).toBeDefined()
    }
  })

  it('is a valid OpenAPI 3.1 document, with the key required or not', async () => {
    for (const publicEndpoints of [true, false]) {
      const { doc } = await arbiterApp({ publicEndpoints })
      const result = await new Validator().validate(doc as never)
      expect(result, JSON.stringify(result.errors ?? null, null, 1)?.slice(0, 2000)).toEqual({
        valid: true,
      })
      expect((doc as unknown as { openapi: string }).openapi).toBe('3.1.0')
      // the validator does not follow $refs: every one names a component that is there
      const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/(\w+)"/g)]
      expect(refs.length).toBeGreaterThan(50)
      const dangling = refs.map((m) => m[1] as string).filter((id) => !doc.components.schemas[id])
      expect(dangling).toEqual([])
    }
  })

  it('says which routes answer without the key (api.publicEndpoints)', async () => {
    type Op = { security?: unknown[]; responses: Record<string, unknown> }
    const op = (d: OpenApiDoc, p: string, m = 'get') => d.paths[p]?.[m] as unknown as Op
    const open = (await arbiterApp({ publicEndpoints: true })).doc
    for (const p of ['/healthz', '/metrics', '/docs', '/docs/openapi.json', '/docs/json']) {
      expect(op(open, p).security, p).toEqual([])
      expect(op(open, p).responses['401'], p).toBeUndefined()
    }
    for (const d of [open, (await arbiterApp({ publicEndpoints: false })).doc]) {
      expect(op(d, '/v1/cluster/status').security).toEqual([{ apiKey: [] }])
      expect(Object.keys(op(d, '/v1/cluster/status').responses)).toEqual(
        expect.arrayContaining(['200', '401', '403', '409']),
      )
    }
    const closed = (await arbiterApp({ publicEndpoints: false })).doc
    for (const p of ['/healthz', '/metrics', '/docs', '/docs/openapi.json']) {
      expect(op(closed, p).security, p).toEqual([{ apiKey: [] }])
    }
  })

  it('lists the JSON-RPC methods with their schemas, each one implemented', async () => {
    const { app, doc } = await arbiterApp()
    const rpc = doc.paths['/rpc']?.post as unknown as {
      description: string
      'x-jsonrpc-methods': Array<{ name: string; params?: unknown; result: { $ref: string } }>
    }
    const methods = rpc['x-jsonrpc-methods']
    expect(methods.map((m) => m.name).sort()).toEqual([
      'cluster.check',
      'cluster.commit',
      'cluster.ddl',
      'cluster.nodes',
      'cluster.repair',
      'cluster.resync',
      'cluster.status',
      'history.list',
      'replicaset.add',
      'replicaset.list',
      'replicaset.remove',
    ])
    for (const m of methods) {
      expect(rpc.description).toContain(`\`${m.name}\``)
      expect(m.result.$ref).toMatch(/^#\/components\/schemas\/\w+$/)
      const r = await app.inject({
        method: 'POST',
        url: '/rpc',
        headers: { 'x-api-key': KEY, 'content-type': 'application/json' },
        payload: { jsonrpc: '2.0', method: m.name, params: { table: 'a.b' }, id: 1 },
      })
      // known (a standalone arbiter refuses it as not mesh), not "method not found"
      expect(r.json().error.code, m.name).toBe(-32003)
    }
  })

  it('every route answers as the document says (here: refusals, no database)', async () => {
    const { app, doc } = await arbiterApp()
    const problems: string[] = []
    const ask = async (
      method: string,
      url: string,
      payload?: unknown,
      key: string | null = KEY,
    ) => {
      const r = await app.inject({
        method: method as 'GET',
        url,
        headers: {
          ...(key === null ? {} : { 'x-api-key': key }),
          ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(payload === undefined ? {} : { payload: JSON.stringify(payload) }),
      })
      const type = r.headers['content-type'] as string | undefined
      const body = r.body === '' ? undefined : type?.includes('json') ? r.json() : r.body
      const p = nonconformity(doc, method, url, r.statusCode, type, body)
      if (p) problems.push(p)
      return r
    }
    expect((await ask('GET', '/v1/arbiter/status')).statusCode).toBe(503)
    await ask('PUT', '/v1/arbiter/control')
    await ask('DELETE', '/v1/arbiter/control')
    expect((await ask('PUT', '/v1/arbiter/subscription/control', { x: 1 })).statusCode).toBe(400)
    await ask('DELETE', '/v1/arbiter/subscription/control', { inbound_node: 1 })
    await ask('PUT', '/v1/arbiter/replicaset/a.b')
    expect((await ask('DELETE', '/v1/arbiter/replicaset/nodot')).statusCode).toBe(400)
    await ask('PATCH', '/v1/arbiter/replicaset')
    await ask('GET', '/v1/arbiter/replicaset/status')
    await ask('GET', '/v1/arbiter/resolution/history')
    for (const url of ['status', 'nodes', 'replicaset', 'history', 'check', 'check/a.b']) {
      expect((await ask('GET', `/v1/cluster/${url}`)).statusCode).toBe(409)
    }
    await ask('PUT', '/v1/cluster/replicaset/a.b')
    await ask('DELETE', '/v1/cluster/replicaset/a.b')
    await ask('DELETE', '/v1/cluster/nodes/3')
    await ask('PUT', '/v1/cluster/nodes/3')
    expect((await ask('POST', '/v1/cluster/check/a.b/repair')).statusCode).toBe(409)
    expect((await ask('POST', '/v1/cluster/check/a.b/repair?from=1', { from: 1 })).statusCode).toBe(
      409,
    )
    expect((await ask('POST', '/rpc', { jsonrpc: '2.0', method: 'x', id: 1 })).statusCode).toBe(200)
    await ask('POST', '/rpc', [{ jsonrpc: '2.0', method: 'cluster.status', id: 'a' }, 7])
    expect((await ask('POST', '/rpc', { jsonrpc: '2.0', method: 'x' })).statusCode).toBe(204)
    expect((await ask('PUT', '/v1/testing/partition', { nodes: 'x' })).statusCode).toBe(400)
    await ask('GET', '/healthz', undefined, null)
    await ask('GET', '/metrics', undefined, null)
    await ask('GET', '/docs', undefined, null)
    await ask('GET', '/docs/openapi.json', undefined, null)
    expect((await ask('GET', '/v1/cluster/status', undefined, null)).statusCode).toBe(401)
    expect((await ask('GET', '/v1/cluster/status', undefined, 'wrong')).statusCode).toBe(403)
    expect(problems).toEqual([])
  })
})

describe('/docs', () => {
  it('serves the page to a browser and the document to any other client', async () => {
    const { app } = await arbiterApp()
    const page = await app.inject({ url: '/docs', headers: { accept: 'text/html,*/*' } })
    expect(page.statusCode).toBe(200)
    expect(page.headers['content-type']).toMatch(/^text\/html/)
    expect(page.body).toContain('swagger-ui-bundle.js')
    const json = await app.inject({ url: '/docs' })
    expect(json.headers['content-type']).toMatch(/^application\/json/)
    expect(json.json()).toEqual((await app.inject({ url: '/docs/openapi.json' })).json())
    const asset = await app.inject({ url: '/docs/static/swagger-ui-bundle.js' })
    expect(asset.statusCode).toBe(200)
    expect(asset.body.length).toBeGreaterThan(100_000)
  })

  it('needs the key for the page, its assets and the document when endpoints are not public', async () => {
    const { app } = await arbiterApp({ publicEndpoints: false })
    for (const url of ['/docs', '/docs/', '/docs/openapi.json', '/docs/static/swagger-ui.css']) {
      expect((await app.inject({ url })).statusCode, url).toBe(401)
      expect((await app.inject({ url, headers: { 'x-api-key': KEY } })).statusCode, url).toBe(200)
    }
  })
})

describe('route schemas describe and nothing else', () => {
  // a route whose declared answer (Error) and body (SubscribeRequest) it does not keep to
  const offSchema: RouteGroup = (app) => {
    app.post(
      '/off-schema',
      {
        schema: doc({
          summary: 'test',
          tag: 'operations',
          body: SubscribeRequest,
          answers: { 200: [ErrorBody, 'an Error, says the schema'] },
        }),
      },
      async (req) => ({ error: 7, message: null, undeclared: { nested: [1, 'x'] }, got: req.body }),
    )
  }

  it('sends every field the handler returns, as JSON.stringify writes it, and lets any body in', async () => {
    const { app } = await arbiterApp({ extra: [offSchema] })
    const r = await app.inject({
      method: 'POST',
      url: '/off-schema',
      headers: { 'x-api-key': KEY, 'content-type': 'application/json' },
      payload: '{"inbound_node": "not a node"}',
    })
    expect(r.statusCode).toBe(200)
    expect(r.body).toBe(
      JSON.stringify({
        error: 7,
        message: null,
        undeclared: { nested: [1, 'x'] },
        got: { inbound_node: 'not a node' },
      }),
    )
  })
})
