// /docs: the generated OpenAPI document and swagger-ui's interactive page, whose assets come
// from the npm package (no CDN: an arbiter's network may reach nothing else). A client that
// does not ask for HTML gets the document at /docs itself, as /docs has always answered.
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { type DocumentInit, doc, swaggerOptions } from './openapi.js'

export const DOCS = '/docs'

/** Register before any route: @fastify/swagger learns the routes as they are added. */
export function registerDocs(app: FastifyInstance, init: DocumentInit): void {
  app.register(swagger, swaggerOptions(init))
  app.register(swaggerUi, {
    routePrefix: DOCS,
    uiConfig: { docExpansion: 'list', deepLinking: true },
    uiHooks: {
      onRequest: async (req: FastifyRequest, reply: FastifyReply) => {
        const route = req.routeOptions.url
        if ((route === DOCS || route === `${DOCS}/`) && !wantsHtml(req)) {
          return reply.send(app.swagger())
        }
      },
    },
  })
}

/** The document at its own path (a route group: registered with the others). */
export function documentRoute(app: FastifyInstance): void {
  app.get(
    `${DOCS}/openapi.json`,
    {
      schema: doc({
        summary: 'This document (OpenAPI 3.1, generated from the routes)',
        tag: 'docs',
        answers: {
          200: [{ content: { 'application/json': { schema: { type: 'object' } } } }, 'OpenAPI 3.1'],
        },
      }),
    },
    async () => app.swagger(),
  )
}

function wantsHtml(req: FastifyRequest): boolean {
  return /\btext\/html\b/i.test(String(req.headers.accept ?? ''))
}
