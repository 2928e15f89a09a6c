// Signing with a kept OpenSSL key (keys.ts keepSigningKey) gives libp2p's own signatures,
// and records signed by a member are checked against the key in its peer id (imported as JWK).
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { keepSigningKey } from '../../src/mesh/keys.js'
import { signRecord, verifyRecord } from '../../src/mesh/record-sig.js'

describe('the node key, signing with a kept OpenSSL key', () => {
  it("signs exactly as libp2p's key did, and its signatures verify", async () => {
    const key = await generateKeyPair('Ed25519')
    const messages = [new Uint8Array(0), Buffer.from('traktor'), new Uint8Array(5000).fill(7)]
    const before = await Promise.all(messages.map((m) => key.sign(m)))
    keepSigningKey(key)
    keepSigningKey(key) // once is enough; again changes nothing
    for (const [i, m] of messages.entries()) {
      const sig = await key.sign(m)
      expect(Buffer.from(sig).equals(Buffer.from(before[i] as Uint8Array))).toBe(true)
      expect(await key.publicKey.verify(m, sig)).toBe(true)
    }
    const aborted = AbortSignal.abort()
    expect(() => key.sign(messages[1] as Uint8Array, { signal: aborted })).toThrow()
  })
})

describe("a member's signed record", () => {
  it('verifies under its own peer id only, and not once changed', async () => {
    const key = await generateKeyPair('Ed25519')
    keepSigningKey(key)
    const peerId = peerIdFromPrivateKey(key).toString()
    const record = await signRecord({ peerId, nodeId: 3, addrs: ['/ip4/127.0.0.1/tcp/1'] }, key)
    expect(verifyRecord(record)).toBe(true)
    expect(verifyRecord({ ...record, nodeId: 4 })).toBe(false)
    const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    expect(verifyRecord({ ...record, peerId: other })).toBe(false)
    expect(verifyRecord({ ...record, sig: undefined })).toBe(false)
    expect(verifyRecord({ ...record, peerId: 'not a peer id' })).toBe(false)
  })
})
