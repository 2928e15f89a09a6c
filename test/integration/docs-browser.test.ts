// /docs in a real browser (issue 9): Debian's chromium, headless, loads the swagger-ui page
// from an arbiter's API and renders the document client-side; the rendered DOM lists the
// cluster routes. Runs when /usr/bin/chromium exists (CI installs it: .ci/run); otherwise it
// is skipped, saying so loudly. By hand: apt-get install --no-install-recommends chromium,
// then npx vitest run test/integration/docs-browser.test.ts
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type ApiApp, apiApp } from '../fixtures/api-app.js'

const CHROMIUM = process.env.TRAKTOR_CHROMIUM ?? '/usr/bin/chromium'
const HAVE_BROWSER = fs.existsSync(CHROMIUM)
if (!HAVE_BROWSER) {
  process.stderr.write(
    `\n*** SKIPPED: /docs browser test: no browser at ${CHROMIUM} ` +
      '(apt-get install --no-install-recommends chromium, or set TRAKTOR_CHROMIUM) ***\n\n',
  )
}

const run = promisify(execFile)
let api: ApiApp
let url: string
let profile: string

/**
 * The DOM after the page's scripts ran. Async on purpose: the API answering the browser runs
 * in this process. --virtual-time-budget lets the page's timers and fetches finish first.
 */
async function renderedDom(page: string): Promise<string> {
  const { stdout } = await run(
    CHROMIUM,
    [
      '--headless',
      '--no-sandbox', // root in CI
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      `--user-data-dir=${profile}`,
      '--virtual-time-budget=10000',
      '--dump-dom',
      page,
    ],
    { timeout: 120_000, maxBuffer: 64 * 1024 * 1024 },
  )
  return stdout
}

describe.skipIf(!HAVE_BROWSER)('/docs in headless chromium', () => {
  beforeAll(async () => {
    profile = fs.mkdtempSync(path.join(os.tmpdir(), 'traktor-chromium-'))
    api = await apiApp()
    await api.app.listen({ host: '127.0.0.1', port: 0 })
    const addr = api.app.server.address()
    url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`
  })
  afterAll(async () => {
    await api?.close()
    if (profile) fs.rmSync(profile, { recursive: true, force: true })
  })

  it('renders the interactive page with the cluster routes listed', async () => {
    // what the server sends names no route: swagger-ui builds the list in the browser
    const html = await (await fetch(`${url}/docs`, { headers: { accept: 'text/html' } })).text()
    expect(html).toContain('swagger-ui-bundle.js')
    expect(html).not.toContain('/v1/cluster/replicaset')

    const dom = await renderedDom(`${url}/docs`)
    expect(dom).toContain('/v1/cluster/replicaset')
    for (const route of [
      '/v1/cluster/replicaset',
      '/v1/cluster/replicaset/{relation}',
      '/v1/cluster/nodes/{id}',
      '/v1/cluster/status',
      '/v1/arbiter/status',
      '/rpc',
    ]) {
      expect(dom, route).toContain(`data-path="${route}"`)
    }
    expect(dom).toContain('traktor arbiter')
  }, 180_000)
})
