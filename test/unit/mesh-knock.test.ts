import net from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { knock } from '../../src/mesh/knock.js'

const servers: net.Server[] = []
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))))
})

async function listening(): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((socket) => socket.destroy())
  servers.push(server)
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { server, port: (server.address() as net.AddressInfo).port }
}

/** a port nothing listens on: one that did a moment ago */
async function closedPort(): Promise<number> {
  const { server, port } = await listening()
  servers.splice(servers.indexOf(server), 1)
  await new Promise((r) => server.close(r))
  return port
}

describe('knock (is anything still listening at a peer’s address?)', () => {
  it('open where a socket listens, refused where none does', async () => {
    const { port } = await listening()
    const gone = await closedPort()
    const id = '/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN'
    expect(await knock([`/ip4/127.0.0.1/tcp/${port}${id}`])).toBe('open')
    expect(await knock([`/ip4/127.0.0.1/tcp/${gone}${id}`])).toBe('refused')
    // one address still listening: the peer may be there
    expect(await knock([`/ip4/127.0.0.1/tcp/${gone}`, `/ip4/127.0.0.1/tcp/${port}`])).toBe('open')
  })

  it('unknown without a TCP address to knock at', async () => {
    expect(await knock([])).toBe('unknown')
    expect(await knock(['/ip4/127.0.0.1/udp/4001/quic-v1'])).toBe('unknown')
    expect(await knock(['not a multiaddr'])).toBe('unknown')
  })
})
