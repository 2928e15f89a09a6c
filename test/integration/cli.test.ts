// The `traktor` command as a user runs it: help, a bad config refused with one line per
// problem before anything starts, and a TLS-serving arbiter from TRAKTOR's SSL keys.
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

describe('TLS from SSLCertfile / SSLKeyfile', () => {
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
  })
})
