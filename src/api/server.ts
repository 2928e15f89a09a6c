// The HTTP server: the only module that imports fastify. Auth, JSON errors, the public
// endpoints (/healthz, /docs) and the route groups; TLS when the config names cert and key.
// Route schemas document the API (docs.ts generates /docs from them); they neither validate
// nor serialise: the handlers check input with the API's own messages, and every answer is
// JSON.stringify of what the handler returns, so a schema can never change an answer.
import fs from 'node:fs'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { ApiConfig } from '../config/types.js'
import type { Logger } from '../log.js'
import { checkApiKey } from './auth.js'
import { DOCS, documentRoute, registerDocs } from './docs.js'
import { httpError } from './errors.js'
import { doc } from './openapi.js'
import { present } from './present.js'
import { HealthBody } from './shapes/index.js'

export type RouteGroup = (app: FastifyInstance) => void

export interface AppInit {
  apiKey: string
  publicEndpoints: boolean
  log: Logger
  routes: readonly RouteGroup[]
  /** extra public routes (e.g. /metrics) that answer without the key when allowed */
  publicPaths?: readonly string[]
  /** `status` names a failure other than "unhealthy" (e.g. "degraded"); 503 whenever !ok */
  health: () => Promise<{ ok: boolean; status?: string; detail: Record<string, unknown> }>
  tls?: { cert: Buffer; key: Buffer }
}

const PUBLIC = ['/healthz', DOCS]

export function buildApp(init: AppInit): FastifyInstance {
  const app = Fastify({
    logger: false,
    routerOptions: { maxParamLength: 1000 },
    bodyLimit: 64 * 1024,
    ...(init.tls ? { https: { cert: init.tls.cert, key: init.tls.key } } : {}),
  }) as unknown as FastifyInstance
  const log = init.log.child({ component: 'api' })
  const publicPaths = new Set([...PUBLIC, ...(init.publicPaths ?? [])])
  // /docs/* is the document and the page's assets: public with /docs
  const isPublic = (path: string) =>
    init.publicEndpoints && (publicPaths.has(path) || path.startsWith(`${DOCS}/`))

  app.setValidatorCompiler(() => () => true)
  app.setSerializerCompiler(() => (data) => JSON.stringify(data))

  // an empty body is no body (curl sends Content-Type on bodiless PUTs); bad JSON is a 400
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    const text = String(body)
    if (text.trim() === '') return done(null, undefined)
    try {
      done(null, JSON.parse(text))
    } catch (err) {
      done(
        Object.assign(new Error(`body is not valid JSON: ${(err as Error).message}`), {
          statusCode: 400,
          code: 'ERR_BAD_JSON',
        }),
      )
    }
  })

  app.addHook('onRequest', async (req: FastifyRequest, reply: FastifyReply) => {
    const path = req.url.split('?')[0] ?? ''
    if (isPublic(path)) return
    const verdict = checkApiKey(init.apiKey, req.headers['x-api-key'])
    if (verdict === 'ok') return
    const status = verdict === 'missing' ? 401 : 403
    log.warn({ method: req.method, path, status }, 'rejected request: API key')
    await reply.code(status).send({
      error: verdict === 'missing' ? 'ERR_API_KEY_MISSING' : 'ERR_API_KEY_WRONG',
      message: verdict === 'missing' ? 'X-API-KEY header required' : 'X-API-KEY is not valid',
    })
  })

  app.addHook('onResponse', async (req, reply) => {
    const line = {
      method: req.method,
      path: req.url,
      status: reply.statusCode,
      ms: Math.round(reply.elapsedTime),
    }
    if (req.method === 'GET' && reply.statusCode < 400) log.debug(line, 'request')
    else log.info(line, 'request')
  })

  app.setErrorHandler(async (err, req, reply) => {
    if (
      (req.url.split('?')[0] ?? '') === '/rpc' &&
      (err as { code?: string }).code === 'ERR_BAD_JSON'
    ) {
      // JSON-RPC 2.0: a parse error is an answer, not an HTTP failure
      await reply
        .code(200)
        .send(present.rpcError(null, { code: -32700, message: (err as Error).message }))
      return
    }
    const { status, body } = httpError(err)
    if (status >= 500) log.error({ path: req.url, err: (err as Error).message }, 'request failed')
    await reply.code(status).send(body)
  })

  app.setNotFoundHandler(async (req, reply) => {
    await reply
      .code(404)
      .send({ error: 'ERR_NO_ROUTE', message: `no route ${req.method} ${req.url}` })
  })

  registerDocs(app, { isPublic })
  // in a plugin, so that @fastify/swagger (registered above, loaded first) sees every route
  app.register(async (scope) => {
    scope.get(
      '/healthz',
      {
        schema: doc({
          summary: 'Liveness and database reachability',
          tag: 'operations',
          answers: { 200: [HealthBody, 'healthy'], 503: [HealthBody, 'not healthy: the reasons'] },
        }),
      },
      async (_req, reply) => {
        const h = await init.health()
        const status = h.ok ? 'ok' : (h.status ?? 'degraded')
        await reply.code(h.ok ? 200 : 503).send({ status, ...h.detail })
      },
    )
    documentRoute(scope)
    for (const group of init.routes) group(scope)
  })
  return app
}

export interface ApiServerInit extends Omit<AppInit, 'tls'> {
  config: ApiConfig
}

type State = { kind: 'stopped' } | { kind: 'running'; app: FastifyInstance; url: string }

export class ApiServer {
  private readonly init: ApiServerInit
  private state: State = { kind: 'stopped' }

  constructor(init: ApiServerInit) {
    this.init = init
  }

  get url(): string | undefined {
    return this.state.kind === 'running' ? this.state.url : undefined
  }

  async start(): Promise<void> {
    if (this.state.kind === 'running') return
    const { config } = this.init
    const tls = config.tls
      ? { cert: fs.readFileSync(config.tls.certFile), key: fs.readFileSync(config.tls.keyFile) }
      : undefined
    const app = buildApp({ ...this.init, ...(tls ? { tls } : {}) })
    await app.listen({ host: config.host, port: config.port })
    const scheme = tls ? 'https' : 'http'
    const host = config.host.includes(':') ? `[${config.host}]` : config.host
    const addr = app.server.address()
    const port = typeof addr === 'object' && addr !== null ? addr.port : config.port
    const url = `${scheme}://${host}:${port}`
    this.state = { kind: 'running', app, url }
    this.init.log.info({ component: 'api', url }, 'API listening')
  }

  async stop(): Promise<void> {
    if (this.state.kind !== 'running') return
    const { app } = this.state
    this.state = { kind: 'stopped' }
    await app.close()
  }
}
