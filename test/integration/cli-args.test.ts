// `traktor start|demo|keygen` arguments on util.parseArgs (issue 9): the messages and exit
// codes a script relies on stay, and what used to be ignored in silence (an unknown option,
// a stray word) is now a usage error, exit 2, before anything starts.
import { execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const BIN = path.resolve(import.meta.dirname, '../../bin/traktor.js')
const exec = promisify(execFile)
let tmp: string

async function traktor(...args: string[]) {
  try {
    const r = await exec(process.execPath, [BIN, ...args], { timeout: 30_000 })
    return { code: 0, stdout: r.stdout, stderr: r.stderr }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'traktor-cli-args-'))
})
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true })
})

describe('traktor command arguments', () => {
  it('keeps the messages and exit codes scripts know', async () => {
    const [none, version, unknown, noConfig, noValue, badNodes, dashNodes, noFile] =
      await Promise.all([
        traktor(),
        traktor('--version'),
        traktor('frob'),
        traktor('start'),
        traktor('start', '--config'),
        traktor('demo', '--nodes', 'x'),
        traktor('demo', '--nodes', '-1'),
        traktor('keygen'),
      ])
    expect(none.code).toBe(2)
    expect(none.stdout).toMatch(/^traktor — multi-master replication for PostgreSQL\n\nusage:/)
    expect(version).toMatchObject({ code: 0, stdout: '0.1.0\n' })
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(/^traktor: unknown command "frob"\n\ntraktor — /)
    for (const r of [noConfig, noValue]) {
      expect(r).toMatchObject({ code: 2, stderr: 'traktor start: --config FILE is required\n' })
    }
    for (const r of [badNodes, dashNodes]) {
      expect(r).toMatchObject({
        code: 2,
        stderr: 'traktor demo: --nodes must be an integer from 2 to 9\n',
      })
    }
    expect(noFile).toMatchObject({ code: 2, stderr: 'traktor keygen: FILE is required\n' })
  })

  it('refuses what it used to ignore, exit 2, and answers --help on every command', async () => {
    const hint = '(traktor --help shows the usage)\n'
    const [typo, stray, demoTypo, exitValue, twoFiles, help, demoHelp] = await Promise.all([
      traktor('start', '--confg', 'x.json'),
      traktor('start', '--config=x.json', 'now'),
      traktor('demo', '--exti'),
      traktor('demo', '--exit=yes'),
      traktor('keygen', path.join(tmp, 'a.key'), path.join(tmp, 'b.key')),
      traktor('start', '--help'),
      traktor('demo', '-h'),
    ])
    expect(typo).toMatchObject({
      code: 2,
      stderr: `traktor start: unknown option --confg\n${hint}`,
    })
    expect(stray).toMatchObject({
      code: 2,
      stderr: `traktor start: unexpected argument "now"\n${hint}`,
    })
    expect(demoTypo).toMatchObject({
      code: 2,
      stderr: `traktor demo: unknown option --exti\n${hint}`,
    })
    expect(exitValue).toMatchObject({
      code: 2,
      stderr: `traktor demo: --exit takes no value\n${hint}`,
    })
    expect(twoFiles.code).toBe(2)
    expect(fs.existsSync(path.join(tmp, 'a.key'))).toBe(false)
    for (const r of [help, demoHelp]) {
      expect(r.code).toBe(0)
      expect(r.stdout).toContain('traktor start --config FILE')
    }
  })

  it('writes a key with keygen FILE', async () => {
    const file = path.join(tmp, 'swarm.key')
    const r = await traktor('keygen', file)
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe(
      `wrote a private-network key to ${file}; copy it to every arbiter of the cluster\n`,
    )
    expect(fs.statSync(file).size).toBeGreaterThan(0)
  })
})
