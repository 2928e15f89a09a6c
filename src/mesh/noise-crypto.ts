// The Noise handshake's X25519, without importing the same private key again for every
// Diffie-Hellman. @libp2p/noise's Node crypto keeps keys as raw bytes and turns them into
// OpenSSL keys at each use: `createPrivateKey` from PKCS#8, which derives the public key again
// (a scalar multiplication), ~350 µs here against 35 µs for the Diffie-Hellman itself. Each side
// of a handshake does three, one with its static key (the same for every connection) and two
// with its ephemeral key; a 12-node mesh spent a tenth of its start-up CPU in those imports
// (V8 profile, `node:internal/crypto/keys` under `generateX25519SharedKey`). Here the key pair
// is generated as OpenSSL keys and the private key object is kept beside its bytes, so each key
// is imported at most once; the peer's public keys are imported from JWK (below). The bytes, the
// handshake and the wire are unchanged.
import crypto, { type KeyObject } from 'node:crypto'
import type { ICryptoInterface } from '@libp2p/noise'
import { defaultCrypto } from '@libp2p/noise/crypto'

/** DER headers of a raw X25519 key (RFC 8410), as @libp2p/noise writes them */
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex')

/** the OpenSSL key behind each private key's bytes that this module generated or imported */
const keys = new WeakMap<Uint8Array, KeyObject>()

function privateKeyOf(bytes: Uint8Array): KeyObject {
  let key = keys.get(bytes)
  if (key === undefined) {
    key = crypto.createPrivateKey({
      key: Buffer.concat([PKCS8_PREFIX, bytes]),
      format: 'der',
      type: 'pkcs8',
    })
    keys.set(bytes, key)
  }
  return key
}

export const noiseCrypto: ICryptoInterface = {
  ...defaultCrypto,
  generateX25519KeyPair() {
    const { publicKey, privateKey } = crypto.generateKeyPairSync('x25519')
    const raw = privateKey.export({ type: 'pkcs8', format: 'der' }).subarray(PKCS8_PREFIX.length)
    keys.set(raw, privateKey)
    return {
      publicKey: publicKey.export({ type: 'spki', format: 'der' }).subarray(SPKI_PREFIX.length),
      privateKey: raw,
    }
  },
  generateX25519SharedKey(privateKey, publicKey) {
    const priv = privateKey instanceof Uint8Array ? privateKey : privateKey.subarray()
    const pub = publicKey instanceof Uint8Array ? publicKey : publicKey.subarray()
    // the peer's public key from JWK: OpenSSL 3 decodes a DER key through its decoder
    // framework, ~140 µs a key here against ~15 µs for the raw bytes of a JWK
    const x = Buffer.from(pub.buffer, pub.byteOffset, pub.byteLength).toString('base64url')
    return crypto.diffieHellman({
      privateKey: privateKeyOf(priv),
      publicKey: crypto.createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x }, format: 'jwk' }),
    })
  },
}
