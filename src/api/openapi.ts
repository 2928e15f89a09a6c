// The OpenAPI 3.1 description served at /docs. Hand-written: it is the contract, so it is
// read and reviewed like one.

const key = [{ apiKey: [] }]
const err = { $ref: '#/components/schemas/Error' }
const json = (schema: object) => ({ content: { 'application/json': { schema } } })
const errors = {
  '400': { description: 'malformed input', ...json(err) },
  '401': { description: 'X-API-KEY missing', ...json(err) },
  '403': { description: 'X-API-KEY wrong', ...json(err) },
  '409': { description: 'refused by the database state, with the reason', ...json(err) },
}
const table = {
  name: 'table',
  in: 'path',
  required: true,
  description: 'schema.table ("quoted" parts keep their case)',
  schema: { type: 'string' },
}

function op(summary: string, ok: string, extra: object = {}) {
  return {
    summary,
    security: key,
    responses: { [ok]: { description: 'done' }, ...errors },
    ...extra,
  }
}

export function openApiDocument(): object {
  return {
    openapi: '3.1.0',
    info: {
      title: 'traktor arbiter',
      version: '1',
      description:
        'Multi-master replication for PostgreSQL. /v1/arbiter/* is TRAKTOR-compatible and acts on this node only.',
    },
    components: {
      securitySchemes: { apiKey: { type: 'apiKey', in: 'header', name: 'X-API-KEY' } },
      schemas: {
        Error: {
          type: 'object',
          required: ['error', 'message'],
          properties: {
            error: { type: 'string' },
            message: { type: 'string' },
            sql_state: { type: 'string' },
          },
        },
        Status: {
          type: 'object',
          properties: {
            node: { type: 'integer' },
            is_replicating: { type: 'boolean' },
            is_tainted: { type: 'boolean' },
            conflicts_resolved: { type: 'integer' },
            conflicts_pending: { type: 'integer' },
            replication_lag_ms: { type: 'number' },
            server_version: { type: 'number' },
            server_version_num: { type: 'integer' },
          },
        },
      },
    },
    paths: {
      '/v1/arbiter/control': {
        put: op(
          'Initialise this node: trktr schema, publication, protections; drops SUPERUSER',
          '201',
        ),
        delete: op(
          "Remove traktor's objects (subscriptions, publication, schema) from this node",
          '200',
        ),
      },
      '/v1/arbiter/subscription/control': {
        put: op('Subscribe to a peer as trktr_sub_<self>_<inbound_node>', '201', {
          requestBody: json({
            type: 'object',
            required: ['inbound_node', 'connection_string'],
            properties: {
              inbound_node: { type: 'integer' },
              connection_string: { type: 'string' },
            },
          }),
        }),
        delete: op('Drop the subscription to a peer', '200', {
          requestBody: json({
            type: 'object',
            required: ['inbound_node'],
            properties: { inbound_node: { type: 'integer' } },
          }),
        }),
      },
      '/v1/arbiter/replicaset/{table}': {
        put: op('Stage a table for addition (pending-add)', '201', { parameters: [table] }),
        delete: op('Stage a table for removal (pending-remove)', '200', { parameters: [table] }),
      },
      '/v1/arbiter/replicaset': {
        patch: op('Commit the staged changes to the publication', '200'),
      },
      '/v1/arbiter/replicaset/status': { get: op('The replicaset: [{relation, status}]', '200') },
      '/v1/arbiter/status': {
        get: op('Node status', '200', {
          responses: {
            '200': { description: 'status', ...json({ $ref: '#/components/schemas/Status' }) },
          },
        }),
      },
      '/v1/arbiter/resolution/history': {
        get: op('Conflicts seen and how they were resolved', '200'),
      },
      '/healthz': {
        get: {
          summary: 'Liveness and database reachability',
          responses: { '200': { description: 'ok' }, '503': { description: 'unhealthy' } },
        },
      },
      '/docs': {
        get: { summary: 'This document', responses: { '200': { description: 'OpenAPI' } } },
      },
    },
  }
}
