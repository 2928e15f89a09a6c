// The `traktor` command as a user runs it: help, a bad config refused with one line per
// problem before anything starts (test hooks included), a TLS-serving arbiter from TRAKTOR's
// SSL keys, and the warnings an accepted but weak config logs at start.
import { execFile, execFileSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePort, startArbiter, stopAllArbiters } from '../fixtures/arbiters.js'
import { type PgServer, startServers } from '../fixtures/pg.js'
import { arbiterConf, prepareTutorialNode } from '../fixtures/tutorial.js'

const BIN = path.resolve(import.meta.dirname, '../../bin/traktor.js')
const run = promisify(execFile)
let tmp: string

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'traktor-cli-'))
})
afterAll(async () => {
  await stopAllArbiters()
  fs.rmSync(tmp, { recursive: true, force: true })
})

describe('traktor CLI', () => {
  it('prints help and exits 0', async () => {
    const { stdout } = await run(process.execPath, [BIN, '--help'])
    expect(stdout).toContain('traktor start --config FILE')
  })

  it('refuses a bad config with every problem, one line each, exit 2', async () => {
    const file = path.join(tmp, 'bad.json')
    fs.writeFileSync(
      file,
      JSON.stringify({
        nodeId: -3,
        postgres: "host=x password='sekrit",
        api: { apiKey: '' },
        colour: 'red',
      }),
    )
    const err = await run(process.execPath, [BIN, 'start', '--config', file], {
      env: { ...process.env, TRAKTOR_API_KEY: '' },
    }).catch((e: { code: number; stderr: string }) => e)
    expect((err as { code: number }).code).toBe(2)
    const lines = (err as { stderr: string }).stderr.split('\n').filter((l) => l.trim() !== '')
    const text = lines.join('\n')
    expect(text).toMatch(/nodeId/)
    expect(text).toMatch(/postgres/)
    expect(text).toMatch(/apiKey/)
    expect(text).toMatch(/colour/)
    expect(text).not.toContain('sekrit')
  })

  it('refuses a test hook without TRAKTOR_TESTING=1, exit 2, naming the key (issue 16)', async () => {
    const file = path.join(tmp, 'hooked.json')
    fs.writeFileSync(
      file,
      JSON.stringify({
        nodeId: 0,
        postgres: 'host=127.0.0.1 port=1 dbname=app user=traktor_arbiter',
        api: { apiKey: 'test-key' },
        testing: { crashAt: 'decision' },
      }),
    )
    const { TRAKTOR_TESTING: _t, ...env } = process.env
    // killed if it ever gets past the config: an arbiter that starts must not outlive the test
    const err = await run(process.execPath, [BIN, 'start', '--config', file], {
      env,
      timeout: 20_000,
      killSignal: 'SIGKILL',
    }).catch((e: { code: number; stdout: string; stderr: string }) => e)
    expect((err as { code: number }).code).toBe(2)
    expect((err as { stdout: string }).stdout).toBe('')
    expect((err as { stderr: string }).stderr).toBe(
      `traktor: invalid config ${file}:\n` +
        '  testing.crashAt: test-only hook, refused unless the environment has TRAKTOR_TESTING=1\n',
    )
  })

  it('refuses a missing config file clearly', async () => {
    const err = await run(process.execPath, [
      BIN,
      'start',
      '--config',
      path.join(tmp, 'nope.conf'),
    ]).catch((e: { code: number; stderr: string }) => e)
    expect((err as { code: number }).code).toBe(2)
    expect((err as { stderr: string }).stderr).toMatch(/nope\.conf/)
  })
})

/** The arbiter's pino lines at `level` (40 = warn). */
function logLines(text: string, level: number): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.level === level)
}

describe('a tutorial node: TLS from SSLCertfile / SSLKeyfile, warnings at start', () => {
  let pg: PgServer
  beforeAll(async () => {
    ;[pg] = (await startServers(1, () => ({ name: 'tls', fast: true }))) as [PgServer]
    await prepareTutorialNode(pg)
  })
  afterAll(async () => {
    await stopAllArbiters()
    await pg?.destroy()
  })

  it('serves the API over https', async () => {
    const key = path.join(tmp, 'api.key')
    const crt = path.join(tmp, 'api.crt')
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        key,
        '-out',
        crt,
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
      ],
      { stdio: 'ignore' },
    )
    // readable by others, as some tools leave a key: accepted with a warning (issue 8)
    fs.chmodSync(key, 0o644)
    const port = await freePort()
    const conf = `${arbiterConf(0, pg.port, port, 1)}SSLKeyfile = ${key}\nSSLCertfile = ${crt}\n`
    const a = await startArbiter({
      nodeId: 0,
      apiKey: 'LetMeIn',
      port,
      file: 'arbiter.conf',
      text: conf,
      env: { NODE_TLS_REJECT_UNAUTHORIZED: '0' },
      scheme: 'https',
    })
    expect(a.url.startsWith('https://')).toBe(true)
    const { stdout } = await run('curl', [
      '-sk',
      '-H',
      'X-API-KEY: LetMeIn',
      `${a.url}/v1/arbiter/status`,
    ])
    expect(JSON.parse(stdout)).toMatchObject({ node: 0, is_replicating: true })
    expect(await a.stop()).toBe(0)
    // the tutorial's 7-character key and the open key file, each one warn line at start
    const warnings = logLines(a.logs(), 40).filter((l) => l.component === 'config')
    expect(warnings.map((l) => [l.setting, l.msg])).toEqual([
      [
        'APIKey',
        'APIKey: shorter than 16 characters; use a longer random key ' +
          '(e.g. the output of "openssl rand -hex 24")',
      ],
      [
        'SSLKeyfile',
        `SSLKeyfile: "${key}" is readable by other users (mode 0644); run: chmod 600 ${key}`,
      ],
    ])
    expect(warnings[1]).toMatchObject({ file: key, mode: '0644', fix: `chmod 600 ${key}` })
    expect(a.logs()).not.toContain('LetMeIn')
  })

  it('logs a loud warning when test hooks are allowed by TRAKTOR_TESTING=1 (issue 16)', async () => {
    const port = await freePort()
    const config = {
      nodeId: 0,
      postgres: `host=127.0.0.1 port=${pg.port} user=traktor_arbiter password=traktor dbname=traktor_tutorial`,
      api: { listen: `127.0.0.1:${port}`, apiKey: 'a-key-of-twenty-chars' },
      testing: { crashAt: 'decision' },
    }
    const a = await startArbiter({
      nodeId: 0,
      apiKey: config.api.apiKey,
      port,
      file: 'hooked.json',
      text: JSON.stringify(config),
      env: { TRAKTOR_TESTING: '1' },
    })
    expect(await a.stop()).toBe(0)
    const warnings = logLines(a.logs(), 40).filter((l) => l.component === 'config')
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toMatchObject({ setting: 'testing', crashAt: 'decision' })
    expect(warnings[0]?.msg).toMatch(/^TEST HOOKS ARE ON \(TRAKTOR_TESTING=1\): testing\.crashAt/)
  })
})
