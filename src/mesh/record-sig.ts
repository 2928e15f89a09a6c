// A member's record signed by the member itself, so that any peer can pass it on and every
// receiver can tell it is the member's own (a sparse mesh, overlay.ts: a new node learns the
// members it is not connected to from its neighbours' hellos). The signature is Ed25519 by the
// member's libp2p key, over a canonical JSON of the record without `sig` (keys sorted, so it
// survives a schema that reorders or a receiver that re-serialises); the key is the one in
// the record's peer id, so a record cannot be passed off under another member's name.
import crypto, { type KeyObject } from 'node:crypto'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'

const DOMAIN = 'traktor-member-record:'
/** OpenSSL keys of the peers whose records were checked (an import costs more than a check) */
const publicKeys = new Map<string, KeyObject | null>()
const MAX_KEPT_KEYS = 4096
/**
 * Signatures already found good, by record: every hello of a sparse mesh passes on the records
 * its sender holds, mostly the same ones again (a 32-node start checked each ~10 times)
 */
const verified = new Map<string, string>()
const MAX_VERIFIED = 4096

/** JSON with object keys sorted and undefined members left out, at every depth. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const o = value as Record<string, unknown>
    const keys = Object.keys(o)
      .filter((k) => o[k] !== undefined)
      .sort()
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`).join(',')}}`
  }
  return JSON.stringify(value)
}

function signedBytes(record: object): Buffer {
  const { sig: _, ...rest } = record as { sig?: string }
  return Buffer.from(DOMAIN + canonicalJson(rest), 'utf8')
}

/** the last record signed, by its signed text (the same record goes in many hellos) */
const lastSigned = new WeakMap<PrivateKey, { text: string; sig: string }>()

/** The record with this node's signature in `sig`. */
export async function signRecord<T extends object>(
  record: T,
  key: PrivateKey,
): Promise<T & { sig: string }> {
  const bytes = signedBytes(record)
  const text = bytes.toString('latin1')
  let last = lastSigned.get(key)
  if (last?.text !== text) {
    last = { text, sig: Buffer.from(await key.sign(bytes)).toString('base64') }
    lastSigned.set(key, last)
  }
  return { ...record, sig: last.sig }
}

function publicKeyOf(peerId: string): KeyObject | null {
  let key = publicKeys.get(peerId)
  if (key !== undefined) return key
  try {
    const pub = peerIdFromString(peerId).publicKey
    // from JWK: OpenSSL 3 decodes a DER key through its decoder framework (165 µs a key here,
    // 14 µs from a JWK's raw bytes)
    const x = pub?.type === 'Ed25519' ? Buffer.from(pub.raw).toString('base64url') : undefined
    key =
      x === undefined
        ? null
        : crypto.createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' })
  } catch {
    key = null
  }
  if (publicKeys.size >= MAX_KEPT_KEYS) publicKeys.clear()
  publicKeys.set(peerId, key)
  return key
}

/** Whether `sig` is the signature of the member the record's peerId names. */
export function verifyRecord(record: {
  peerId: string
  sig?: string | undefined
  [field: string]: unknown
}): boolean {
  if (record.sig === undefined) return false
  const bytes = signedBytes(record)
  const text = bytes.toString('latin1')
  if (verified.get(record.sig) === text) return true
  const key = publicKeyOf(record.peerId)
  if (key === null) return false
  try {
    if (!crypto.verify(null, bytes, key, Buffer.from(record.sig, 'base64'))) return false
  } catch {
    return false
  }
  if (verified.size >= MAX_VERIFIED) verified.clear()
  verified.set(record.sig, text)
  return true
}
