// A large full mesh probes its ring's connections only (issue 14; overlay.ts probeEdges), in one
// process: ten real mesh nodes with their membership, a full mesh (every pair connected) that
// probes each member from at most four others past four members. Every member is known alive;
// a member that stops is seen dead by every node (its connections close: no probe needed); a
// partition is seen whole from each side, and once healed every member is alive again — also
// where a side held the other dead only by its probers' word.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Membership } from '../../src/cluster/membership.js'
import type { MeshPort } from '../../src/cluster/port.js'
import { silentLogger } from '../../src/log.js'
import type { Mesh } from '../../src/mesh/node.js'
import { bareAddress, MeshLab, waitFor } from '../fixtures/mesh-nodes.js'

const N = 10
const PROBE_ALL_UP_TO = 4
const TIMINGS = { heartbeatMs: 500, suspectAfterMs: 1000, deadAfterMs: 2000 }

interface Node {
  mesh: Mesh
  membership: Membership
}

const lab = new MeshLab()
const nodes: Node[] = []
let up: Node[] = []

function start(mesh: Mesh, nodeId: number): Node {
  const membership = new Membership({
    mesh: mesh as unknown as MeshPort,
    nodeId,
    postgres: `host=127.0.0.1 port=1 dbname=app user=node${nodeId}`,
    version: 'test',
    timings: TIMINGS,
    log: silentLogger(),
    self: () => ({ joinState: 'ready', replicasetVersion: 0, rosterVersion: 0, postgresUp: true }),
  })
  membership.start()
  return { mesh, membership }
}

const alive = (n: Node): number =>
  n.membership.members().filter((m) => m.state === 'alive' && !m.duplicate).length
const stateOf = (n: Node, peerId: string): string | undefined =>
  n.membership.members().find((m) => m.peerId === peerId)?.state
const probedBy = (n: Node, all: Node[]): Node[] =>
  all.filter((o) => o !== n && n.mesh.probes(o.mesh.peerId))

beforeAll(async () => {
  await lab.setup()
  const hub = await lab.started({ probeAllUpTo: PROBE_ALL_UP_TO })
  nodes.push(start(hub, 0))
  const boot = bareAddress(hub)
  for (let i = 1; i < N; i++) {
    const m = await lab.started({ probeAllUpTo: PROBE_ALL_UP_TO, bootstrap: [boot] })
    nodes.push(start(m, i))
  }
  up = [...nodes]
})

afterAll(async () => {
  for (const n of nodes) n.membership.stop()
  await lab.teardown()
})

describe(`a full mesh of ${N} probing its ring past ${PROBE_ALL_UP_TO}`, () => {
  it('knows every member alive, connected to every other, each probed from a few', async () => {
    await waitFor(() => nodes.every((n) => alive(n) === N - 1), 20_000, 'all see all alive')
    await waitFor(
      () => nodes.every((n) => n.mesh.connectedPeers().length === N - 1),
      20_000,
      'every pair connected',
    )
    for (const n of nodes) {
      expect(n.mesh.sparse()).toBe(false)
      const probed = probedBy(n, nodes)
      expect(probed.length).toBeGreaterThan(0)
      expect(probed.length).toBeLessThanOrEqual(4)
      // the same pairs on both ends
      for (const o of probed) expect(o.mesh.probes(n.mesh.peerId)).toBe(true)
    }
    // heard on the probe only where probed (a few ticks after the ring is known)
    await waitFor(
      () =>
        nodes.every((n) =>
          nodes.every(
            (o) =>
              o === n ||
              (n.mesh.answeredAt(o.mesh.peerId) !== undefined) === n.mesh.probes(o.mesh.peerId),
          ),
        ),
      5000,
      'probe answers only on the ring',
    )
    // and every member is still alive everywhere, judged by rumor where not probed
    expect(nodes.every((n) => alive(n) === N - 1)).toBe(true)
  })

  it('sees a member that stops dead on every node, also where nobody probed it', async () => {
    const victim = nodes[N - 1] as Node
    const others = nodes.filter((n) => n !== victim)
    up = others
    const id = victim.mesh.peerId
    expect(others.some((n) => !n.mesh.probes(id))).toBe(true)
    victim.membership.stop()
    await victim.mesh.stop()
    const t0 = Date.now()
    await waitFor(() => others.every((n) => stateOf(n, id) === 'dead'), 10_000, 'victim dead')
    console.info(`ring probes: a stopped member seen dead by all after ${Date.now() - t0} ms`)
    await waitFor(() => others.every((n) => alive(n) === N - 2), 5_000, 'the others alive')
  })

  it('sees each side of a partition dead from the other, and all alive again once healed', async () => {
    const [a, b] = [up.slice(0, 5), up.slice(5)]
    const ids = (side: Node[]): string[] => side.map((n) => n.mesh.peerId)
    await Promise.all([
      ...a.map((n) => n.mesh.partition(ids(b))),
      ...b.map((n) => n.mesh.partition(ids(a))),
    ])
    const apart = (side: Node[], other: Node[]): boolean =>
      side.every((n) => other.every((o) => stateOf(n, o.mesh.peerId) === 'dead'))
    await waitFor(() => apart(a, b) && apart(b, a), 20_000, 'each side holds the other dead').catch(
      (err: Error) => {
        // who holds whom how (a alive, s suspect, d dead), and what a stuck holder's record says
        const all = [...a, ...b]
        const view = (n: Node): string =>
          all.map((o) => (o === n ? '-' : (stateOf(n, o.mesh.peerId) ?? '?')[0])).join('')
        const rec = (n: Node, id: string) =>
          (n.membership as unknown as { byPeer: Map<string, Record<string, unknown>> }).byPeer.get(
            id,
          )
        const stuck = all.flatMap((n) =>
          all
            .filter((o) => (a.includes(n) ? b : a).includes(o))
            .filter((o) => stateOf(n, o.mesh.peerId) !== 'dead')
            .map((o) => {
              const r = rec(n, o.mesh.peerId)
              return `${all.indexOf(n)} holds ${all.indexOf(o)}: probes ${n.mesh.probes(o.mesh.peerId)} met ${n.mesh.met(o.mesh.peerId)} rumor ${JSON.stringify(r?.rumor)} disconnected ${r?.disconnectedAtMs !== undefined} heard ${Date.now() - Number(r?.lastHeardMs)} ms ago`
            }),
        )
        throw new Error(
          `${err.message}:\n${all.map((n, i) => `${i} ${view(n)}`).join('\n')}\n${stuck.join('\n')}`,
        )
      },
    )
    const whole = (side: Node[]) => side.every((n) => alive(n) === side.length - 1)
    await waitFor(() => whole(a) && whole(b), 5_000, 'each side whole')
    for (const n of up) n.mesh.heal()
    await waitFor(
      () => up.every((n) => alive(n) === up.length - 1),
      30_000,
      'all alive again',
    ).catch((err: Error) => {
      const all = up
      const rec = (n: Node, id: string) =>
        (n.membership as unknown as { byPeer: Map<string, Record<string, unknown>> }).byPeer.get(id)
      const stuck = all.flatMap((n) =>
        all
          .filter((o) => o !== n && stateOf(n, o.mesh.peerId) !== 'alive')
          .map((o) => {
            const r = rec(n, o.mesh.peerId)
            return `${all.indexOf(n)} holds ${all.indexOf(o)} ${stateOf(n, o.mesh.peerId)}: connected ${n.mesh.connectedPeers().includes(o.mesh.peerId)} probes ${n.mesh.probes(o.mesh.peerId)} met ${n.mesh.met(o.mesh.peerId)} seq ${r?.seq} rumor ${JSON.stringify(r?.rumor)} disconnected ${r?.disconnectedAtMs !== undefined}`
          }),
      )
      throw new Error(`${err.message}:\n${stuck.slice(0, 20).join('\n')}`)
    })
  })
})
