// One JSON shape for every error answer: { error: <stable code>, message: <for a person> }.
import { BadRequestError, ConflictError, NotFoundError, TraktorError } from '../errors.js'
import type { ErrorBody } from './shapes/index.js'

/** The cluster routes and methods of an arbiter without a mesh. */
export function notMesh(): ConflictError {
  return new ConflictError('this arbiter runs standalone (no "mesh" in its config)', 'ERR_NOT_MESH')
}

export function httpError(err: unknown): { status: number; body: ErrorBody } {
  if (err instanceof BadRequestError) return { status: 400, body: body(err) }
  if (err instanceof ConflictError) return { status: 409, body: body(err) }
  if (err instanceof NotFoundError)
    return { status: err.code === 'ERR_NOT_INITIALIZED' ? 409 : 404, body: body(err) }
  if (err instanceof TraktorError) {
    // PostgreSQL refusing a well-formed request (a missing object, a privilege) is a 409;
    // PostgreSQL being unreachable is a 503
    if (err.code === 'ERR_POSTGRES_CONNECTION') return { status: 503, body: body(err) }
    // the arbiter's own login refused (28P01 wrong password, 28000 no pg_hba entry) or the
    // server going down (57P0x, 53xxx out of connections): unavailable, not a bug
    if (err.sqlState && /^(28|57P|53)/.test(err.sqlState)) {
      return {
        status: 503,
        body: {
          ...body(err),
          message: `the arbiter cannot use its PostgreSQL (check "postgres" in its config): ${err.message}`,
        },
      }
    }
    if (err.sqlState && /^(42|23|55|0A)/.test(err.sqlState)) return { status: 409, body: body(err) }
    return { status: 500, body: body(err) }
  }
  const e = err as { statusCode?: number; message?: string; code?: string }
  if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    return {
      status: e.statusCode,
      body: { error: e.code ?? 'ERR_BAD_REQUEST', message: e.message ?? 'bad request' },
    }
  }
  return {
    status: 500,
    body: { error: 'ERR_INTERNAL', message: (err as Error)?.message ?? String(err) },
  }
}

function body(err: TraktorError): ErrorBody {
  return {
    error: err.code,
    message: err.message,
    ...(err.sqlState ? { sql_state: err.sqlState } : {}),
  }
}
