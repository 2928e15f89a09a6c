// Errors with a stable `code` that callers and tests branch on; PostgreSQL's SQLSTATE is kept
// as `sqlState` when a server error is the cause.

export class TraktorError extends Error {
  readonly code: string
  readonly sqlState?: string

  constructor(code: string, message: string, options: { cause?: unknown; sqlState?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'TraktorError'
    this.code = code
    if (options.sqlState !== undefined) this.sqlState = options.sqlState
  }
}

/** Config problems: every line names a key and what is wrong with it. */
export class ConfigError extends TraktorError {
  readonly problems: readonly string[]

  constructor(source: string, problems: readonly string[]) {
    super('ERR_CONFIG', `invalid config ${source}:\n${problems.map((p) => `  ${p}`).join('\n')}`)
    this.name = 'ConfigError'
    this.problems = problems
  }
}

/** Input from a caller that cannot be accepted (maps to HTTP 400). */
export class BadRequestError extends TraktorError {
  constructor(message: string, code = 'ERR_BAD_REQUEST') {
    super(code, message)
    this.name = 'BadRequestError'
  }
}

/** A request that is well-formed but conflicts with the database's state (HTTP 409). */
export class ConflictError extends TraktorError {
  constructor(message: string, code = 'ERR_CONFLICT', sqlState?: string) {
    super(code, message, sqlState === undefined ? {} : { sqlState })
    this.name = 'ConflictError'
  }
}

/** Something named does not exist (HTTP 404). */
export class NotFoundError extends TraktorError {
  constructor(message: string, code = 'ERR_NOT_FOUND') {
    super(code, message)
    this.name = 'NotFoundError'
  }
}
