// The ctl HTTP client with a stand-in fetch: which failures become which exit codes.
import { describe, expect, it } from 'vitest'
import { CtlError } from '../../src/ctl/errors.js'
import { ApiClient, Interrupted } from '../../src/ctl/http.js'

const URL_ = 'http://10.0.0.5:8080'

function client(fetch: typeof globalThis.fetch, apiKey?: string, timeoutMs = 1000) {
  return new ApiClient({ url: URL_, timeoutMs, fetch, ...(apiKey ? { apiKey } : {}) })
}

const answer = (status: number, body: string, type = 'application/json') =>
  (async () => new Response(body, { status, headers: { 'content-type': type } })) as typeof fetch

/** a fetch that never answers, only gives up when its signal aborts */
const hang = ((_url: string, init: RequestInit) =>
  new Promise((_resolve, reject) => {
    init.signal?.addEventListener('abort', () => reject(new DOMException('aborted', 'AbortError')))
  })) as unknown as typeof fetch

async function failure(p: Promise<unknown>): Promise<CtlError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  )
  expect(err).toBeInstanceOf(CtlError)
  return err as CtlError
}

describe('ctl http client', () => {
  it('sends the key only when it has one, and parses JSON', async () => {
    const seen: Array<{ url: string; headers: Record<string, string>; method?: string }> = []
    const fetch = (async (url: string, init: RequestInit) => {
      seen.push({ url, headers: init.headers as Record<string, string>, method: init.method })
      return new Response('{"ok":true}', { status: 200 })
    }) as unknown as typeof globalThis.fetch
    expect(await client(fetch, 'k').request('GET', '/v1/cluster/nodes')).toEqual({
      status: 200,
      body: { ok: true },
    })
    await client(fetch).request('PUT', '/x')
    expect(seen[0]).toMatchObject({ url: `${URL_}/v1/cluster/nodes`, method: 'GET' })
    expect(seen[0]?.headers['x-api-key']).toBe('k')
    expect(seen[1]?.headers).not.toHaveProperty('x-api-key')
    expect(await client(answer(200, '')).request('GET', '/')).toEqual({
      status: 200,
      body: undefined,
    })
  })

  it('passes refusals through for the caller to explain', async () => {
    const a = await client(answer(409, '{"error":"ERR_NOT_MESH","message":"m"}')).request(
      'GET',
      '/',
    )
    expect(a).toEqual({ status: 409, body: { error: 'ERR_NOT_MESH', message: 'm' } })
  })

  it('exit 3: connection refused, host not found, a blocked port, named with the URL', async () => {
    const refused = (async () => {
      throw new TypeError('fetch failed', {
        cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
      })
    }) as typeof fetch
    const e = await failure(client(refused).request('GET', '/'))
    expect(e.exitCode).toBe(3)
    expect(e.message).toBe(`cannot reach the arbiter at ${URL_} (connection refused)`)
    const tls = (async () => {
      throw new TypeError('fetch failed', {
        cause: Object.assign(new Error('self-signed'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }),
      })
    }) as typeof fetch
    expect((await failure(client(tls).request('GET', '/'))).message).toMatch(
      /DEPTH_ZERO_SELF_SIGNED_CERT\); to trust its certificate, start with NODE_EXTRA_CA_CERTS/,
    )
    const badPort = (async () => {
      throw new TypeError('fetch failed', { cause: new Error('bad port') })
    }) as typeof fetch
    expect((await failure(client(badPort).request('GET', '/'))).message).toMatch(
      /fetch refuses this port/,
    )
  })

  it('exit 3 after the timeout, warning that a change may still complete', async () => {
    const read = await failure(client(hang, 'k', 30).request('GET', '/'))
    expect(read.exitCode).toBe(3)
    expect(read.message).toBe(`no answer from the arbiter at ${URL_} within 30 ms`)
    const change = await failure(client(hang, 'k', 30).request('PUT', '/'))
    expect(change.message).toMatch(/within 30 ms; the change may still complete/)
  })

  it('tells an interruption (Ctrl-C during --watch) from a timeout', async () => {
    const ac = new AbortController()
    const p = client(hang, 'k', 10_000).request('GET', '/', ac.signal)
    ac.abort()
    await expect(p).rejects.toBeInstanceOf(Interrupted)
    await expect(client(hang).request('GET', '/', ac.signal)).rejects.toBeInstanceOf(Interrupted)
  })

  it('exit 4 on a missing or wrong key, never echoing the key', async () => {
    const missing = await failure(client(answer(401, '{}')).request('GET', '/'))
    expect(missing.exitCode).toBe(4)
    expect(missing.message).toMatch(/wants an API key: pass --api-key KEY or set TRAKTOR_API_KEY/)
    const wrong = await failure(client(answer(403, '{}'), 'sekrit').request('GET', '/'))
    expect(wrong.exitCode).toBe(4)
    expect(wrong.message).toMatch(/refused the API key/)
    expect(wrong.message).not.toContain('sekrit')
  })

  it('exit 1 when what answers is not a traktor arbiter', async () => {
    const e = await failure(client(answer(200, '<html>', 'text/html')).request('GET', '/'))
    expect(e.exitCode).toBe(1)
    expect(e.message).toBe(
      `${URL_} answered 200 with text/html, not JSON: is it a traktor arbiter?`,
    )
  })
})
