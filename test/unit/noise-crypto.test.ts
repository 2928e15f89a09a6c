// The Noise X25519 that keeps each private key's OpenSSL object (src/mesh/noise-crypto.ts):
// the same shared secrets as @libp2p/noise's own crypto, in both directions and with keys
// made by either, and a private key imported once, not at every Diffie-Hellman.
import crypto from 'node:crypto'
import { defaultCrypto } from '@libp2p/noise/crypto'
import { Uint8ArrayList } from 'uint8arraylist'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { noiseCrypto } from '../../src/mesh/noise-crypto.js'

afterEach(() => {
  vi.restoreAllMocks()
})

describe('noise crypto', () => {
  it('agrees with the library: keys made by either, secrets equal both ways', () => {
    const ours = noiseCrypto.generateX25519KeyPair()
    const theirs = defaultCrypto.generateX25519KeyPair()
    expect(ours.privateKey).toHaveLength(32)
    expect(ours.publicKey).toHaveLength(32)
    const a = noiseCrypto.generateX25519SharedKey(ours.privateKey, theirs.publicKey)
    const b = defaultCrypto.generateX25519SharedKey(theirs.privateKey, ours.publicKey)
    const c = defaultCrypto.generateX25519SharedKey(ours.privateKey, theirs.publicKey)
    expect(Buffer.from(a).toString('hex')).toBe(Buffer.from(b).toString('hex'))
    expect(Buffer.from(a).toString('hex')).toBe(Buffer.from(c).toString('hex'))
    // a key it did not make (the library's), and keys handed over as lists
    const d = noiseCrypto.generateX25519SharedKey(
      new Uint8ArrayList(theirs.privateKey),
      new Uint8ArrayList(ours.publicKey),
    )
    expect(Buffer.from(d).toString('hex')).toBe(Buffer.from(a).toString('hex'))
    // and a different peer gives a different secret
    const other = defaultCrypto.generateX25519KeyPair()
    const e = noiseCrypto.generateX25519SharedKey(ours.privateKey, other.publicKey)
    expect(Buffer.from(e).toString('hex')).not.toBe(Buffer.from(a).toString('hex'))
  })

  it("imports the peer's public key from its raw bytes (JWK), not DER: ten times cheaper here", () => {
    const imports = vi.spyOn(crypto, 'createPublicKey')
    const ours = noiseCrypto.generateX25519KeyPair()
    const peer = defaultCrypto.generateX25519KeyPair()
    noiseCrypto.generateX25519SharedKey(ours.privateKey, peer.publicKey)
    expect(imports).toHaveBeenCalledTimes(1)
    expect(imports.mock.calls[0]?.[0]).toMatchObject({ format: 'jwk', key: { crv: 'X25519' } })
  })

  it('imports a private key once, however many handshakes use it', () => {
    const imports = vi.spyOn(crypto, 'createPrivateKey')
    const made = noiseCrypto.generateX25519KeyPair() // generated as a key object: no import
    const seeded = defaultCrypto.generateX25519KeyPair() // bytes only: imported at first use
    for (let i = 0; i < 20; i++) {
      const peer = defaultCrypto.generateX25519KeyPair()
      noiseCrypto.generateX25519SharedKey(made.privateKey, peer.publicKey)
      noiseCrypto.generateX25519SharedKey(seeded.privateKey, peer.publicKey)
    }
    expect(imports).toHaveBeenCalledTimes(1)
    // the library's own path imports at every use (what this module saves)
    imports.mockClear()
    const peer = defaultCrypto.generateX25519KeyPair()
    for (let i = 0; i < 5; i++)
      defaultCrypto.generateX25519SharedKey(made.privateKey, peer.publicKey)
    expect(imports).toHaveBeenCalledTimes(5)
  })
})
