// The peers of the last run, kept beside the identity file: what is read back is only what
// names its peer, and a file that is not ours is an error, never a wrong dial.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { loadOrCreateIdentity, peerIdOf } from '../../src/mesh/keys.js'
import { knownPeersFile, readKnownPeers, writeKnownPeers } from '../../src/mesh/known-peers.js'

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'known-peers-'))
afterEach(() => {
  for (const f of fs.readdirSync(dir)) fs.rmSync(path.join(dir, f))
})

async function ids(n: number): Promise<string[]> {
  const out: string[] = []
  for (let i = 0; i < n; i++)
    out.push(peerIdOf(await loadOrCreateIdentity(path.join(dir, `k${i}.key`))))
  return out
}

describe('known peers', () => {
  it('reads back what it wrote, beside the identity file, readable by the owner only', async () => {
    const [p, q] = await ids(2)
    const file = knownPeersFile(path.join(dir, 'peer.key'))
    expect(file).toBe(path.join(dir, 'peer.key.peers'))
    expect(readKnownPeers(file)).toEqual([])
    const peers = [
      { peerId: p as string, addrs: [`/ip4/127.0.0.1/tcp/4001/p2p/${p}`] },
      {
        peerId: q as string,
        addrs: [`/ip4/10.0.0.2/tcp/4001/p2p/${q}`, `/ip4/127.0.0.1/tcp/4002/p2p/${q}`],
      },
    ]
    writeKnownPeers(file, peers)
    expect(readKnownPeers(file)).toEqual(peers)
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
  })

  it('drops entries that do not name their peer, and refuses a file that is not its own', async () => {
    const [p, q] = await ids(2)
    const file = path.join(dir, 'x.peers')
    fs.writeFileSync(
      file,
      JSON.stringify({
        peers: [
          { peerId: p, addrs: [`/ip4/127.0.0.1/tcp/1/p2p/${q}`, 'not an address', 7] },
          { peerId: 'not a peer id', addrs: [`/ip4/127.0.0.1/tcp/1/p2p/${p}`] },
          { peerId: q, addrs: [`/ip4/127.0.0.1/tcp/2/p2p/${q}`, '/ip4/127.0.0.1/tcp/3'] },
          'garbage',
          null,
        ],
      }),
    )
    expect(readKnownPeers(file)).toEqual([{ peerId: q, addrs: [`/ip4/127.0.0.1/tcp/2/p2p/${q}`] }])
    fs.writeFileSync(file, '{"peers": 3}')
    expect(() => readKnownPeers(file)).toThrow(/no "peers" list/)
    fs.writeFileSync(file, 'not json')
    expect(() => readKnownPeers(file)).toThrow()
  })
})
