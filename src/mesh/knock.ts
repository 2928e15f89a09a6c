// Whether anything still listens where a peer said it does: a bare TCP connect, closed as soon
// as it opens (no private network, no Noise: nothing of libp2p's). When a lasting connection to
// a peer closes, the peer with the smaller id redials it and the other waits for that dial, so
// that their dials do not cross (crossing.ts); the waiting side would learn that a killed peer
// is gone only from its own redial, hundreds of milliseconds later. A refused knock tells it at
// once (a killed arbiter's port refuses; a frozen one's kernel still accepts, so a knock never
// says a live or frozen peer is gone). A port that accepts says the process runs: the close was
// a silence (one end too busy to answer its probes), judged as silence is (rumors.ts).
import net from 'node:net'
import { type Component, multiaddr } from '@multiformats/multiaddr'

const KNOCK_TIMEOUT_MS = 1000

/** The TCP host and port of an ip4/ip6/dns address, if it is one. */
function tcpTarget(addr: string): { host: string; port: number } | undefined {
  let parts: Component[]
  try {
    parts = multiaddr(addr).getComponents()
  } catch {
    return undefined
  }
  const host = parts[0]
  const tcp = parts[1]
  if (host === undefined || tcp?.name !== 'tcp' || host.value === undefined) return undefined
  if (!['ip4', 'ip6', 'dns', 'dns4', 'dns6'].includes(host.name)) return undefined
  return { host: host.value, port: Number(tcp.value) }
}

/**
 * 'refused' when every TCP address refused the connection, 'open' when one accepted it,
 * 'unknown' otherwise (no TCP address, a timeout, another error).
 */
export async function knock(addrs: readonly string[]): Promise<'refused' | 'open' | 'unknown'> {
  const targets = addrs.flatMap((a) => tcpTarget(a) ?? [])
  if (targets.length === 0) return 'unknown'
  const results = await Promise.all(targets.map(knockOne))
  if (results.includes('open')) return 'open'
  return results.every((r) => r === 'refused') ? 'refused' : 'unknown'
}

function knockOne(t: { host: string; port: number }): Promise<'refused' | 'open' | 'unknown'> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: t.host, port: t.port })
    const done = (r: 'refused' | 'open' | 'unknown') => {
      socket.destroy()
      resolve(r)
    }
    socket.setTimeout(KNOCK_TIMEOUT_MS, () => done('unknown'))
    socket.once('connect', () => done('open'))
    socket.once('error', (err: NodeJS.ErrnoException) =>
      done(err.code === 'ECONNREFUSED' ? 'refused' : 'unknown'),
    )
  })
}
