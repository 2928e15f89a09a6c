// A sparse mesh (issue 14; src/mesh/overlay.ts), in one process: ten real mesh nodes with
// their membership, made sparse past four members. Each node connects to its bootstrap peer
// and its ring neighbours only, yet knows every member alive (signed records passed on in
// hellos), and a member that stops is seen dead by all, also by those never connected to it
// (their probers' suspicion, gossiped); a member suspected wrongly clears itself.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Membership } from '../../src/cluster/membership.js'
import type { MeshPort } from '../../src/cluster/port.js'
import { silentLogger } from '../../src/log.js'
import type { Mesh } from '../../src/mesh/node.js'
import { bareAddress, MeshLab, waitFor } from '../fixtures/mesh-nodes.js'

const N = 10
const FULL_MESH_UP_TO = 4
const TIMINGS = { heartbeatMs: 500, suspectAfterMs: 1000, deadAfterMs: 2000 }

interface Node {
  mesh: Mesh
  membership: Membership
}

const lab = new MeshLab()
const nodes: Node[] = []
/** the nodes still running (one is stopped on purpose below) */
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

beforeAll(async () => {
  await lab.setup()
  const hub = await lab.started({ fullMeshUpTo: FULL_MESH_UP_TO })
  nodes.push(start(hub, 0))
  const boot = bareAddress(hub)
  for (let i = 1; i < N; i++) {
    const m = await lab.started({ fullMeshUpTo: FULL_MESH_UP_TO, bootstrap: [boot] })
    nodes.push(start(m, i))
  }
  up = [...nodes]
})

afterAll(async () => {
  for (const n of nodes) n.membership.stop()
  await lab.teardown()
})

describe(`a sparse mesh of ${N} (full mesh up to ${FULL_MESH_UP_TO})`, () => {
  it('knows every member alive, each node connected to a few only', async () => {
    await waitFor(() => nodes.every((n) => alive(n) === N - 1), 20_000, 'all see all alive')
    // each node works its ring out again at most every 100 ms
    await waitFor(() => nodes.every((n) => n.mesh.sparse()), 1000, 'every node sparse')
    // the ring settles a second after the last member is learned of
    await waitFor(
      () => nodes.slice(1).every((n) => n.mesh.connectedPeers().length >= 3),
      10_000,
      'ring neighbours connected',
    )
    const degrees = nodes.slice(1).map((n) => n.mesh.connectedPeers().length)
    console.info('DEGREES', degrees.join(' '), nodes.map((n) => n.mesh.sparse()).join(' '))
    // not a full mesh: the hub (everyone's bootstrap peer) is connected to all, the rest not
    expect(Math.min(...degrees)).toBeLessThan(N - 1)
    const notConnected = nodes.slice(1).some((n) => n.mesh.connectedPeers().length < N - 2)
    expect(notConnected).toBe(true)
  })

  it('sees a member that stops dead on every node, also where it was never connected', async () => {
    // the member with the fewest connections (not the hub): most others never connected to it
    const victim = nodes
      .slice(1)
      .reduce((a, b) => (b.mesh.connectedPeers().length < a.mesh.connectedPeers().length ? b : a))
    const others = nodes.filter((n) => n !== victim)
    up = others
    const id = victim.mesh.peerId
    const strangers = others.filter((n) => !n.mesh.connectedPeers().includes(id))
    expect(strangers.length).toBeGreaterThan(0)
    victim.membership.stop()
    await victim.mesh.stop()
    const t0 = Date.now()
    await waitFor(() => others.every((n) => stateOf(n, id) === 'dead'), 10_000, 'victim dead')
    console.info(
      `sparse mesh of ${N}: a stopped member seen dead by all after ${Date.now() - t0} ms`,
    )
    // the others stay alive to each other (a probe answered late on a loaded machine may make
    // one suspect for a moment: within a few seconds, not at an instant)
    await waitFor(() => others.every((n) => alive(n) === N - 2), 5_000, 'the others alive')
  })

  it('lets a member that was suspected wrongly clear itself with a newer record', async () => {
    const [a, b, target] = [up[1] as Node, up[2] as Node, up[5] as Node]
    const id = target.mesh.peerId
    const seen = () => b.membership.members().find((m) => m.peerId === id)
    await waitFor(() => seen()?.state === 'alive', 5_000, 'the target alive on b')
    const held = seen()
    // the seq of the target's record as b holds it (not part of the public Member)
    const seqAt = (n: Node): number =>
      (n.membership as unknown as { byPeer: Map<string, { seq?: number }> }).byPeer.get(id)?.seq ??
      -1
    const seq = seqAt(b)
    // a says, falsely, that the target is dead, as of that record
    await a.mesh.publish('membership', {
      v: 1,
      kind: 'suspicion',
      peerId: a.mesh.peerId,
      of: id,
      incarnation: held?.incarnation,
      seq,
      state: 'dead',
    })
    // the target hears it and answers with a newer record, which reaches every node
    await waitFor(() => seqAt(b) > seq, 10_000, "the target's answer")
    await waitFor(
      () => up.every((n) => n === target || stateOf(n, id) === 'alive'),
      10_000,
      'target alive everywhere after its answer',
    )
    await waitFor(() => alive(b) === N - 2, 5_000, 'every other member alive on b')
  })

  it('sees each side of a partition dead from the other, and all alive again once healed', async () => {
    const [a, b] = [up.slice(0, 5), up.slice(5)]
    const ids = (side: Node[]): string[] => side.map((n) => n.mesh.peerId)
    await Promise.all([
      ...a.map((n) => n.mesh.partition(ids(b))),
      ...b.map((n) => n.mesh.partition(ids(a))),
    ])
    const t0 = Date.now()
    const apart = (side: Node[], other: Node[]): boolean =>
      side.every((n) => other.every((o) => stateOf(n, o.mesh.peerId) === 'dead'))
    // a member with no prober on this side is found when the ring is walked round it (the
    // neighbours of a member held dead are dialed instead; overlay.ts)
    await waitFor(() => apart(a, b) && apart(b, a), 30_000, 'each side holds the other dead').catch(
      (err: Error) => {
        // who holds whom how (a alive, s suspect, d dead): a failure says which view is stuck
        const all = [...a, ...b]
        const view = (n: Node): string =>
          all.map((o) => (o === n ? '-' : (stateOf(n, o.mesh.peerId) ?? '?')[0])).join('')
        // and, for each member held alive across the partition, what the holder's record of it
        // says and what the others on its side hold (record seq, rumor)
        const rec = (n: Node, id: string) =>
          (n.membership as unknown as { byPeer: Map<string, Record<string, unknown>> }).byPeer.get(
            id,
          )
        const stuck: string[] = []
        for (const [side, other] of [
          [a, b],
          [b, a],
        ] as const)
          for (const n of side)
            for (const o of other) {
              const id = o.mesh.peerId
              if (stateOf(n, id) === 'dead') continue
              const r = rec(n, id)
              const seqs = side.map((x) => (x === n ? '*' : `${rec(x, id)?.seq}`)).join(',')
              stuck.push(
                `${all.indexOf(n)} holds ${all.indexOf(o)}: seq ${r?.seq} rumor ${JSON.stringify(r?.rumor)} heard ${Date.now() - Number(r?.lastHeardMs)} ms ago, disconnected ${r?.disconnectedAtMs !== undefined}, answered ${n.mesh.answeredAt(id) !== undefined}, met ${n.mesh.met(id)}; side's seqs ${seqs}`,
              )
            }
        const views = all.map((n, i) => `${i} ${view(n)}`).join('\n')
        throw new Error(`${err.message}:\n${views}\n${stuck.join('\n')}`)
      },
    )
    console.info(`sparse mesh: a partition seen whole on both sides after ${Date.now() - t0} ms`)
    const whole = (side: Node[]) => side.every((n) => alive(n) === side.length - 1)
    await waitFor(() => whole(a) && whole(b), 5_000, 'each side whole')
    for (const n of up) n.mesh.heal()
    await waitFor(() => up.every((n) => alive(n) === up.length - 1), 30_000, 'all alive again')
  })
})
