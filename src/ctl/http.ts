// The arbiter's REST API from the shell: global fetch, the X-API-KEY header, a deadline on
// every call, and the failures a person can act on turned into CtlErrors with exit codes:
// no answer (3), a key problem (4). Any other answer goes back to the caller as it is.
import { CtlError, EXIT } from './errors.js'

export interface Answer {
  status: number
  /** the parsed JSON body (undefined when the body is empty) */
  body: unknown
}

export interface ApiClientInit {
  url: string
  apiKey?: string
  timeoutMs: number
  fetch?: typeof fetch
}

/** The call was cancelled by the caller (Ctrl-C during --watch), not by the deadline. */
export class Interrupted extends Error {
  constructor() {
    super('interrupted')
    this.name = 'Interrupted'
  }
}

const REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
}
const TLS_CODES = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ERR_TLS|SSL/

export class ApiClient {
  private readonly init: ApiClientInit

  constructor(init: ApiClientInit) {
    this.init = init
  }

  get url(): string {
    return this.init.url
  }

  async request(
    method: string,
    path: string,
    signal?: AbortSignal,
    body?: unknown,
  ): Promise<Answer> {
    const { url, apiKey, timeoutMs } = this.init
    if (signal?.aborted) throw new Interrupted()
    // one signal for both the deadline and the caller (AbortSignal.any needs Node 20.3)
    const ac = new AbortController()
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      ac.abort()
    }, timeoutMs)
    const onAbort = () => ac.abort()
    signal?.addEventListener('abort', onAbort, { once: true })
    const target = `${url}${path}`
    try {
      let res: Response
      try {
        res = await (this.init.fetch ?? fetch)(target, {
          method,
          headers: {
            accept: 'application/json',
            ...(apiKey ? { 'x-api-key': apiKey } : {}),
            ...(body === undefined ? {} : { 'content-type': 'application/json' }),
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: ac.signal,
        })
      } catch (err) {
        if (signal?.aborted) throw new Interrupted()
        if (timedOut) throw noAnswer(url, method, timeoutMs)
        throw unreachable(url, err)
      }
      let text: string
      try {
        text = await res.text()
      } catch (err) {
        if (signal?.aborted) throw new Interrupted()
        if (timedOut) throw noAnswer(url, method, timeoutMs)
        throw unreachable(url, err)
      }
      const answer = { status: res.status, body: parseBody(url, res, text) }
      checkAuth(url, answer)
      return answer
    } finally {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
  }
}

function parseBody(url: string, res: Response, text: string): unknown {
  if (text.trim() === '') return undefined
  try {
    return JSON.parse(text)
  } catch {
    const type = res.headers.get('content-type') ?? 'no content type'
    throw new CtlError(
      'ERR_CTL_NOT_JSON',
      EXIT.refused,
      `${url} answered ${res.status} with ${type}, not JSON: is it a traktor arbiter?`,
    )
  }
}

function checkAuth(url: string, a: Answer): void {
  if (a.status === 401) {
    throw new CtlError(
      'ERR_CTL_API_KEY_MISSING',
      EXIT.auth,
      `the arbiter at ${url} wants an API key: pass --api-key KEY or set TRAKTOR_API_KEY`,
    )
  }
  if (a.status === 403) {
    throw new CtlError(
      'ERR_CTL_API_KEY_WRONG',
      EXIT.auth,
      `the arbiter at ${url} refused the API key: check --api-key or TRAKTOR_API_KEY`,
    )
  }
}

function unreachable(url: string, err: unknown): CtlError {
  // fetch says "fetch failed"; the reason (ECONNREFUSED, ENOTFOUND, a TLS code) is the cause
  const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause
  const code = typeof cause?.code === 'string' ? cause.code : undefined
  const message = typeof cause?.message === 'string' ? cause.message : String(err)
  const detail =
    message === 'bad port'
      ? 'fetch refuses this port, one that browsers block; give the API another port'
      : code
        ? (REASONS[code] ?? code)
        : message
  const hint =
    code && TLS_CODES.test(code)
      ? '; to trust its certificate, start with NODE_EXTRA_CA_CERTS=ca.pem'
      : ''
  return new CtlError(
    'ERR_CTL_UNREACHABLE',
    EXIT.unreachable,
    `cannot reach the arbiter at ${url} (${detail})${hint}`,
    { cause: err },
  )
}

function noAnswer(url: string, method: string, timeoutMs: number): CtlError {
  const change = method !== 'GET'
  return new CtlError(
    'ERR_CTL_TIMEOUT',
    EXIT.unreachable,
    `no answer from the arbiter at ${url} within ${timeoutMs} ms` +
      (change ? '; the change may still complete: look before repeating it' : ''),
  )
}
