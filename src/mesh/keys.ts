// The arbiter's two secrets on disk: its libp2p identity (an Ed25519 key, so its peer id
// survives restarts) and the cluster's private-network key (pnet's swarm.key format); and how
// the identity signs.
import crypto, { randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generateKey } from '@libp2p/pnet'
import { TraktorError } from '../errors.js'

export type { PrivateKey }

/** `/key/swarm/psk/1.0.0/\n/base16/\n<64 hex>`: 95 bytes, what pnet's generateKey writes */
const PSK_LENGTH = 95
const PSK_HEADER = '/key/swarm/psk/1.0.0/'
const PSK_CODEC = '/base16/'
const PSK_HEX = /^[0-9a-fA-F]{64}$/

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err
    ? String((err as { code: unknown }).code)
    : undefined
}

/**
 * Reads the node's identity from `file`, or creates one there (mode 0600) on first start.
 * A file that exists but does not hold an Ed25519 key is an error, never overwritten: a new
 * key would silently give the node a new peer id.
 */
export async function loadOrCreateIdentity(file: string): Promise<PrivateKey> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(file)
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') {
      throw new TraktorError('ERR_MESH_IDENTITY', `cannot read identity file ${file}`, {
        cause: err,
      })
    }
    return createIdentity(file)
  }
  let key: PrivateKey
  try {
    key = privateKeyFromProtobuf(bytes)
  } catch (err) {
    throw new TraktorError(
      'ERR_MESH_IDENTITY',
      `identity file ${file} is corrupt (not a libp2p private key); move it away to create a new identity`,
      { cause: err },
    )
  }
  if (key.type !== 'Ed25519') {
    throw new TraktorError(
      'ERR_MESH_IDENTITY',
      `identity file ${file} holds a ${key.type} key; traktor uses Ed25519`,
    )
  }
  return key
}

async function createIdentity(file: string): Promise<PrivateKey> {
  const key = await generateKeyPair('Ed25519')
  // write aside and rename, so a crash never leaves a truncated identity behind
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`
  try {
    await mkdir(dirname(file), { recursive: true })
    await writeFile(tmp, privateKeyToProtobuf(key), { mode: 0o600, flag: 'wx' })
    await rename(tmp, file)
  } catch (err) {
    await rm(tmp, { force: true })
    throw new TraktorError('ERR_MESH_IDENTITY', `cannot create identity file ${file}`, {
      cause: err,
    })
  }
  return key
}

/** The peer id ("12D3KooW...") a key stands for. */
export function peerIdOf(key: PrivateKey): string {
  return peerIdFromPrivateKey(key).toString()
}

/** Writes a new private-network key to `file` (mode 0600); refuses to replace an existing file. */
export async function writePskFile(file: string): Promise<void> {
  const psk = new Uint8Array(PSK_LENGTH)
  generateKey(psk)
  try {
    await writeFile(file, psk, { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') {
      throw new TraktorError('ERR_MESH_PSK_EXISTS', `${file} already exists; not overwriting it`)
    }
    throw new TraktorError('ERR_MESH_PSK_INVALID', `cannot write private-network key ${file}`, {
      cause: err,
    })
  }
}

/** Checks a swarm.key's text and returns it in pnet's canonical form. */
export function parsePsk(bytes: Uint8Array, source = 'the private-network key'): Uint8Array {
  const lines = Buffer.from(bytes)
    .toString('utf8')
    .trimEnd()
    .split(/\r\n|\n|\r/)
  const [header, codec, hex, ...rest] = lines
  const problem =
    header !== PSK_HEADER
      ? `its first line must be ${PSK_HEADER}`
      : codec !== PSK_CODEC
        ? `its second line must be ${PSK_CODEC}`
        : hex === undefined || !PSK_HEX.test(hex)
          ? 'its third line must be 64 hexadecimal characters'
          : rest.length > 0
            ? 'it has lines after the key'
            : undefined
  if (problem !== undefined || hex === undefined) {
    throw new TraktorError(
      'ERR_MESH_PSK_INVALID',
      `${source} is not a private-network key (${problem}); create one with "traktor keygen FILE"`,
    )
  }
  return new TextEncoder().encode(`${PSK_HEADER}\n${PSK_CODEC}\n${hex.toLowerCase()}`)
}

/** Reads and checks a private-network key file (see parsePsk). */
export async function readPsk(file: string): Promise<Uint8Array> {
  let bytes: Uint8Array
  try {
    bytes = await readFile(file)
  } catch (err) {
    throw new TraktorError('ERR_MESH_PSK_INVALID', `cannot read private-network key ${file}`, {
      cause: err,
    })
  }
  return parsePsk(bytes, file)
}

/** the identities signing with a kept OpenSSL key */
const keepsSigningKey = new WeakSet<PrivateKey>()

/**
 * Sign with one OpenSSL key per identity. libp2p's Ed25519 key imports its bytes into a new
 * OpenSSL key at every signature (a JWK import that derives the public key again): gossipsub
 * signs every message, identify its peer record for every connection, record-sig.ts each new
 * member record; half the time of a signature (126 µs against 59 here). The signatures are the
 * same bytes (Ed25519 is deterministic). Applied to the node's own key before libp2p gets it
 * (libp2p.ts).
 */
export function keepSigningKey(key: PrivateKey): void {
  if (key.type !== 'Ed25519' || keepsSigningKey.has(key)) return
  const raw = key.raw
  const d = Buffer.from(raw.subarray(0, 32)).toString('base64url')
  const x = Buffer.from(key.publicKey.raw).toString('base64url')
  const openssl = crypto.createPrivateKey({
    key: { kty: 'OKP', crv: 'Ed25519', d, x },
    format: 'jwk',
  })
  keepsSigningKey.add(key)
  const sign: PrivateKey['sign'] = (message, options) => {
    options?.signal?.throwIfAborted()
    const bytes = message instanceof Uint8Array ? message : message.subarray()
    return new Uint8Array(crypto.sign(null, bytes, openssl))
  }
  key.sign = sign
}
