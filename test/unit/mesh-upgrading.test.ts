// Inbound connections being set up (inbound.ts Upgrading): while one from a peer is, this node
// does not dial that peer too (redial.ts). Only the connection's close event is used, so a
// stand-in EventTarget plays the connection here (named so: not a libp2p connection).
import type { MultiaddrConnection } from '@libp2p/interface'
import { describe, expect, it } from 'vitest'
import { Upgrading } from '../../src/mesh/inbound.js'

const standInConnection = () => new EventTarget() as unknown as MultiaddrConnection

describe('Upgrading', () => {
  it('holds a peer from its handshake until its connection closes', () => {
    const u = new Upgrading(60_000)
    const conn = standInConnection()
    expect(u.has('peerA')).toBe(false)
    u.add('peerA', conn)
    expect(u.has('peerA')).toBe(true)
    expect(u.has('peerB')).toBe(false)
    conn.dispatchEvent(new Event('close'))
    expect(u.has('peerA')).toBe(false)
  })

  it('forgets a peer after forMs, and an old connection closing does not drop a newer one', async () => {
    const u = new Upgrading(30)
    const old = standInConnection()
    const newer = standInConnection()
    u.add('peerA', old)
    u.add('peerA', newer)
    old.dispatchEvent(new Event('close'))
    expect(u.has('peerA')).toBe(true)
    await new Promise((r) => setTimeout(r, 40))
    expect(u.has('peerA')).toBe(false)
  })
})
