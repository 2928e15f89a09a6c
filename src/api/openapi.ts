// The OpenAPI 3.1 document is generated (@fastify/swagger) from the schemas each route declares
// with `doc()`, so it cannot drift from the routes. This file holds what is not a route: the
// document's head, the shapes of src/api/shapes/ as components, and the security each path needs.
// Route schemas describe; they validate and serialise nothing (see server.ts): the handlers
// check their input with the messages the API has always given.
import type { FastifySchema } from 'fastify'
import { z } from 'zod'
import { VERSION } from '../version.js'
import { ErrorBody, SHAPES } from './shapes/index.js'

const COMPONENTS = '#/components/schemas/'

export const TAGS = [
  {
    name: 'arbiter',
    description:
      "TRAKTOR's per-node API, unchanged: this node only (in mesh mode the arbiter owns these objects and the changes answer 409 ERR_MESH_MODE)",
  },
  {
    name: 'cluster',
    description:
      'The whole cluster from any node (mesh mode; standalone arbiters answer 409 ERR_NOT_MESH)',
  },
  { name: 'jsonrpc', description: 'The cluster operations as JSON-RPC 2.0 methods' },
  { name: 'operations', description: 'Health and metrics' },
  { name: 'docs', description: 'This document and its interactive page' },
  { name: 'testing', description: 'Test-only routes, present only when the config enables them' },
] as const

type Tag = (typeof TAGS)[number]['name']
/** What a response carries: a shape of src/api/shapes/, several (any of them), or raw content. */
type Body = z.ZodType | readonly z.ZodType[] | { content: Record<string, { schema: object }> }

export interface RouteDoc {
  summary: string
  description?: string
  tag: Tag
  /** path parameters: name → description */
  params?: Record<string, string>
  /** optional query parameters: name → [JSON schema type, description] */
  query?: Record<string, readonly ['string' | 'integer', string]>
  /** the request body (a shape of src/api/shapes/); the handler checks it */
  body?: z.ZodType
  /** status → [what the answer carries (null: nothing), when] */
  answers: { [status: number]: readonly [Body | null, string] | undefined }
  /** the error statuses this route answers with an Error body (401/403 are added per path) */
  errors?: readonly number[]
  [extension: `x-${string}`]: unknown
}

const ERRORS: Record<number, string> = {
  400: 'malformed input',
  401: 'X-API-KEY missing',
  403: 'X-API-KEY wrong',
  404: 'no such thing',
  409: 'refused by the state of the database or the cluster, with the reason',
  503: 'PostgreSQL unreachable, or it refuses the arbiter',
}

/** `{ $ref }` to a shape of src/api/shapes/ (every shape a route names is registered there). */
export function ref(schema: z.ZodType): { $ref: string } {
  const id = SHAPES.get(schema)?.id
  if (id === undefined)
    throw new Error('a route names a schema that src/api/shapes/ does not register')
  return { $ref: `${COMPONENTS}${id}` }
}

function response(body: Body | null, description: string): object {
  if (body === null) return { description, type: 'null' }
  if (body instanceof z.ZodType) return { description, ...ref(body) }
  if ('content' in body) return { description, content: body.content }
  return { description, anyOf: body.map(ref) }
}

export function errorAnswers(codes: readonly number[]): Record<number, object> {
  return Object.fromEntries(codes.map((c) => [c, response(ErrorBody, ERRORS[c] ?? 'refused')]))
}

/** A route's schema option: what the document says about it. */
export function doc(d: RouteDoc): FastifySchema {
  const { summary, description, tag, params, query, body, answers, errors, ...rest } = d
  return {
    summary,
    ...(description ? { description } : {}),
    tags: [tag],
    ...(params
      ? {
          params: {
            type: 'object',
            properties: Object.fromEntries(
              Object.entries(params).map(([k, v]) => [k, { type: 'string', description: v }]),
            ),
            required: Object.keys(params),
          },
        }
      : {}),
    ...(query
      ? {
          querystring: {
            type: 'object',
            properties: Object.fromEntries(
              Object.entries(query).map(([k, [type, v]]) => [
                k,
                { type, ...(type === 'integer' ? { minimum: 0 } : {}), description: v },
              ]),
            ),
          },
        }
      : {}),
    ...(body ? { body: ref(body) } : {}),
    response: {
      ...Object.fromEntries(
        Object.entries(answers).flatMap(([s, a]) => (a ? [[s, response(a[0], a[1])]] : [])),
      ),
      ...errorAnswers(errors ?? []),
    },
    ...rest,
  }
}

/** The shapes as the document's components.schemas, refs between them by name. */
export function components(): Record<string, object> {
  const { schemas } = z.toJSONSchema(SHAPES, { uri: (id) => `${COMPONENTS}${id}` })
  return Object.fromEntries(Object.entries(schemas).map(([id, s]) => [id, tidy(s) as object]))
}

// zod writes draft 2020-12 with a $schema and $id per schema and the safe-integer bounds on
// every integer; in a document's components those are noise
const SAFE = Number.MAX_SAFE_INTEGER
function tidy(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(tidy)
  if (typeof v !== 'object' || v === null) return v
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v)) {
    if (k === '$schema' || k === '$id') continue
    if (k === 'minimum' && x === -SAFE) continue
    if (k === 'maximum' && x === SAFE) continue
    out[k] =
      k === 'additionalProperties' && typeof x === 'object' && x && Object.keys(x).length === 0
        ? true
        : tidy(x)
  }
  return out
}

export interface DocumentInit {
  /** answers without the key (api.publicEndpoints) */
  isPublic: (path: string) => boolean
}

/** @fastify/swagger's options: the head, the components, and per path who may call it. */
export function swaggerOptions(init: DocumentInit) {
  return {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'traktor arbiter',
        version: VERSION,
        description:
          'Multi-master replication for PostgreSQL. /v1/arbiter/* is TRAKTOR-compatible and acts on this node only; /v1/cluster/* and /rpc act on the whole cluster (mesh mode). Every answer is JSON; a refusal is {error, message}. Generated from the routes themselves.',
      },
      tags: TAGS.map((t) => ({ ...t })),
      components: {
        securitySchemes: {
          apiKey: { type: 'apiKey' as const, in: 'header' as const, name: 'X-API-KEY' },
        },
        schemas: components(),
      },
      security: [{ apiKey: [] }],
    },
    transform: ({ schema, url }: { schema: FastifySchema; url: string }) => {
      const own = UI_ROUTES[url]
      const s = own ? doc(own.doc) : schema
      if (!s || s.hide) return { schema: s, url }
      const open = init.isPublic(url)
      return {
        url: own?.url ?? url,
        schema: {
          ...s,
          security: open ? [] : [{ apiKey: [] }],
          response: {
            ...(s.response as object),
            ...(open ? {} : errorAnswers([401, 403])),
          },
        },
      }
    },
  }
}

const assets = (type: string) => ({ content: { [type]: { schema: { type: 'string' } } } })

/** @fastify/swagger-ui's own routes (it hides them): what they are, so every route is here. */
const UI_ROUTES: Record<string, { url?: string; doc: RouteDoc }> = {
  // its page is registered as /docs and /docs/; fastify hands @fastify/swagger the latter
  '/docs/': {
    url: '/docs',
    doc: {
      summary: 'This API as an interactive page',
      description:
        'A browser (Accept: text/html) gets the swagger-ui page; any other client gets the OpenAPI document as JSON, as /docs/openapi.json.',
      tag: 'docs',
      answers: {
        200: [
          {
            content: {
              'text/html': { schema: { type: 'string' } },
              'application/json': { schema: { type: 'object' } },
            },
          },
          'the page, or the document',
        ],
      },
    },
  },
  '/docs/json': {
    doc: {
      summary: 'The OpenAPI document, as the page loads it',
      tag: 'docs',
      answers: { 200: [assets('application/json'), 'OpenAPI 3.1'] },
    },
  },
  '/docs/yaml': {
    doc: {
      summary: 'The OpenAPI document as YAML',
      tag: 'docs',
      answers: { 200: [assets('application/x-yaml'), 'OpenAPI 3.1'] },
    },
  },
  '/docs/static/index.html': {
    doc: {
      summary: 'Redirects to the page',
      tag: 'docs',
      answers: { 302: [null, 'to /docs/'] },
    },
  },
  '/docs/static/swagger-initializer.js': {
    doc: {
      summary: "The page's start script",
      tag: 'docs',
      answers: { 200: [assets('application/javascript'), 'script'] },
    },
  },
  '/docs/static/*': {
    url: '/docs/static/{file}',
    doc: {
      summary: "The page's assets (swagger-ui, served from its npm package)",
      tag: 'docs',
      params: { file: 'an asset of swagger-ui' },
      answers: { 200: [assets('application/octet-stream'), 'the file'] },
      errors: [404],
    },
  },
}
