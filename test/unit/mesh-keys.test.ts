import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  loadOrCreateIdentity,
  parsePsk,
  peerIdOf,
  readPsk,
  writePskFile,
} from '../../src/mesh/keys.js'

let dir: string

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'traktor-keys-'))
})

afterEach(() => {
  rmSync(dir, { recursive: true, force: true })
})

describe('identity', () => {
  it('is created on first use (mode 0600) and the same afterwards', async () => {
    const file = join(dir, 'sub', 'node.key')
    const first = await loadOrCreateIdentity(file)
    expect(first.type).toBe('Ed25519')
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const again = await loadOrCreateIdentity(file)
    expect(peerIdOf(again)).toBe(peerIdOf(first))
    expect(peerIdOf(first)).toMatch(/^12D3KooW/)
  })

  it('refuses a corrupt file and leaves it alone', async () => {
    const file = join(dir, 'node.key')
    writeFileSync(file, 'not a key')
    await expect(loadOrCreateIdentity(file)).rejects.toMatchObject({ code: 'ERR_MESH_IDENTITY' })
    expect(readFileSync(file, 'utf8')).toBe('not a key')
  })
})

describe('private-network key', () => {
  it('is written in the swarm.key format, mode 0600, and read back', async () => {
    const file = join(dir, 'swarm.key')
    await writePskFile(file)
    const text = readFileSync(file, 'utf8')
    expect(text).toMatch(/^\/key\/swarm\/psk\/1\.0\.0\/\n\/base16\/\n[0-9a-f]{64}$/)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect(new TextDecoder().decode(await readPsk(file))).toBe(text)
  })

  it('is never overwritten', async () => {
    const file = join(dir, 'swarm.key')
    await writePskFile(file)
    const before = readFileSync(file, 'utf8')
    await expect(writePskFile(file)).rejects.toMatchObject({ code: 'ERR_MESH_PSK_EXISTS' })
    expect(readFileSync(file, 'utf8')).toBe(before)
  })

  it('tolerates a trailing newline and upper-case hex', () => {
    const hex = 'AB'.repeat(32)
    const psk = parsePsk(new TextEncoder().encode(`/key/swarm/psk/1.0.0/\n/base16/\n${hex}\n`))
    expect(new TextDecoder().decode(psk)).toBe(
      `/key/swarm/psk/1.0.0/\n/base16/\n${'ab'.repeat(32)}`,
    )
  })

  it.each([
    ['a wrong header', `/key/swarm/psk/2.0.0/\n/base16/\n${'a'.repeat(64)}`],
    ['another codec', `/key/swarm/psk/1.0.0/\n/base64/\n${'a'.repeat(64)}`],
    ['a short key', `/key/swarm/psk/1.0.0/\n/base16/\n${'a'.repeat(62)}`],
    ['non-hex', `/key/swarm/psk/1.0.0/\n/base16/\n${'g'.repeat(64)}`],
    ['extra lines', `/key/swarm/psk/1.0.0/\n/base16/\n${'a'.repeat(64)}\nmore`],
    ['nothing', ''],
  ])('rejects %s', (_what, text) => {
    expect(() => parsePsk(new TextEncoder().encode(text))).toThrow(
      expect.objectContaining({ code: 'ERR_MESH_PSK_INVALID' }),
    )
  })

  it('names a missing file', async () => {
    await expect(readPsk(join(dir, 'missing.key'))).rejects.toMatchObject({
      code: 'ERR_MESH_PSK_INVALID',
    })
  })
})
