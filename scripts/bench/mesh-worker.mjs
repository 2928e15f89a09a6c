// A child process of the mesh-scale benchmark: holds a few mesh nodes (traktor's `Mesh` and
// `Membership` from dist/, no PostgreSQL), started on the parent's word, and reports what
// each node sees. Talks to the parent over the IPC channel only; logs nothing (unless
// TRAKTOR_BENCH_LOG names a directory).
//
// parent → child: {type:'start', nodes:[{nodeId, port}], bootstrap, pskFile, dir, victim}
//                 {type:'view', flaps?}  {type:'counters'}  {type:'stop'}
// child → parent: {type:'loaded'}  {type:'started', ms}  {type:'view', nodes:[...]}
//                 {type:'counters', gossipOut, gossipIn}  {type:'stopped'}
import path from 'node:path'
import { probeEveryMs } from '../../dist/cluster/detector.js'
import { Membership } from '../../dist/cluster/membership.js'
import { DEFAULT_HEARTBEAT_MS } from '../../dist/config/schema.js'
import { createLogger, silentLogger } from '../../dist/log.js'
import { Mesh } from '../../dist/mesh/node.js'

// the arbiter's defaults (src/config/schema.ts)
const TIMINGS = {
  heartbeatMs: Number(process.env.TRAKTOR_BENCH_HEARTBEAT_MS ?? DEFAULT_HEARTBEAT_MS),
  suspectAfterMs: 1000,
  deadAfterMs: 2000,
}
const running = []
let victim
let total = 0

function send(msg) {
  if (process.connected) process.send(msg)
}

async function start(msg) {
  victim = msg.victim
  total = msg.total
  const t0 = performance.now()
  await Promise.all(
    msg.nodes.map(async ({ nodeId, port }) => {
      // TRAKTOR_BENCH_LOG=<dir>: each node logs (info) to <dir>/node<id>.log, to see a run that
      // does not converge
      const dir = process.env.TRAKTOR_BENCH_LOG
      const log = dir
        ? createLogger({ nodeId, destination: path.join(dir, `node${nodeId}.log`) })
        : silentLogger()
      const mesh = new Mesh({
        nodeId,
        cluster: 'bench',
        listen: [`/ip4/127.0.0.1/tcp/${port}`],
        bootstrap: nodeId === 0 ? [] : [msg.bootstrap],
        identityFile: path.join(msg.dir, `node${nodeId}.key`),
        pskFile: msg.pskFile,
        insecure: false,
        probeEveryMs: probeEveryMs(TIMINGS),
        log,
        // TRAKTOR_BENCH_FULL_MESH_UP_TO: past this many members the mesh is sparse (default 64)
        ...(process.env.TRAKTOR_BENCH_FULL_MESH_UP_TO
          ? { fullMeshUpTo: Number(process.env.TRAKTOR_BENCH_FULL_MESH_UP_TO) }
          : {}),
        // TRAKTOR_BENCH_PROBE_ALL_UP_TO: past this many members a full mesh watches its ring's
        // connections only (default 32; 64 watches every connection of a full mesh)
        ...(process.env.TRAKTOR_BENCH_PROBE_ALL_UP_TO
          ? { probeAllUpTo: Number(process.env.TRAKTOR_BENCH_PROBE_ALL_UP_TO) }
          : {}),
        // TRAKTOR_BENCH_GOSSIP: gossipsub parameters to compare (JSON), e.g. {"Dlazy":0}
        ...(process.env.TRAKTOR_BENCH_GOSSIP
          ? { gossipTuning: JSON.parse(process.env.TRAKTOR_BENCH_GOSSIP) }
          : {}),
      })
      // learnedUnmet: members first heard of while not connected to them (records passed on)
      const n = {
        nodeId,
        mesh,
        convergedAt: undefined,
        victimDeadAt: undefined,
        victimFalseDeaths: 0,
        learned: new Set(),
        learnedUnmet: 0,
        /** per member (peer id): its node id and state, as the last change told (observe) */
        states: new Map(),
      }
      const membership = new Membership({
        mesh,
        nodeId,
        postgres: `host=127.0.0.1 port=1 dbname=bench user=node${nodeId}`,
        version: 'bench',
        timings: TIMINGS,
        log,
        self: () => ({ joinState: 'ready', replicasetVersion: 0 }),
        onChange: (m) => {
          n.states.set(m.peerId, { nodeId: m.nodeId, state: m.state, duplicate: m.duplicate })
          if (!n.learned.has(m.peerId)) {
            n.learned.add(m.peerId)
            if (!mesh.connectedPeers().includes(m.peerId)) n.learnedUnmet++
          }
          observe(n)
        },
      })
      n.membership = membership
      running.push(n)
      await mesh.start()
      membership.start()
    }),
  )
  send({ type: 'started', ms: performance.now() - t0 })
}

/**
 * Record (wall clock, comparable across processes) when this node first saw what we wait for.
 * Called at every change of every node, so from the states the changes told (n.states), not
 * from membership.members(), which copies every record: at 32 and 64 members, with thousands
 * of changes in a start, that copying was the observer's own load on the cores it measures
 * (38 of 240 s of CPU in a sparse 64-member start's profile).
 */
function observe(n) {
  let alive = 0
  let v
  for (const m of n.states.values()) {
    if (m.duplicate) continue
    if (m.state === 'alive') alive++
    if (m.nodeId === victim) v = m
  }
  if (n.convergedAt === undefined && alive === total - 1) n.convergedAt = Date.now()
  if (n.victimDeadAt === undefined && n.convergedAt !== undefined && v?.state === 'dead') {
    n.victimDeadAt = Date.now()
  } else if (n.victimDeadAt !== undefined && v?.state === 'alive') {
    // held dead while it ran (before the kill): a false death, counted, and the time forgotten
    n.victimDeadAt = undefined
    n.victimFalseDeaths++
  }
}

/**
 * What each node sees, from the states its changes told (n.states): the parent asks every
 * 100-200 ms, and membership.members() copies every record (3 % of the bootstrap process's CPU
 * in a 16-member start's window). The flaps are counted from the records when asked (`flaps`).
 */
function view(flaps) {
  return running.map((n) => {
    observe(n)
    let alive = 0
    let known = 0
    let victimState = 'unknown'
    for (const m of n.states.values()) {
      if (m.duplicate) continue
      known++
      if (m.state === 'alive') alive++
      if (m.nodeId === victim) victimState = m.state
    }
    return {
      nodeId: n.nodeId,
      alive,
      known,
      victimState,
      flaps: flaps
        ? n.membership
            .members()
            .filter((m) => !m.duplicate)
            .reduce((a, m) => a + m.flaps, 0)
        : undefined,
      peers: n.mesh.connectedPeers().length,
      convergedAt: n.convergedAt,
      learnedUnmet: n.learnedUnmet,
      victimDeadAt: n.victimDeadAt,
      victimFalseDeaths: n.victimFalseDeaths,
    }
  })
}

function counters() {
  const out = { membership: 0, proposals: 0, conflicts: 0 }
  let inn = 0
  for (const n of running) {
    const c = n.mesh.counters()
    for (const [k, v] of Object.entries(c.gossipOut)) out[k] += v
    inn += Object.values(c.gossipIn).reduce((a, b) => a + b, 0)
  }
  // event loop utilisation since the last call: near 1 means this process is saturated
  const elu = performance.eventLoopUtilization(lastElu)
  lastElu = performance.eventLoopUtilization()
  return {
    gossipOut: out.membership + out.proposals + out.conflicts,
    gossipOutByTopic: out,
    gossipIn: inn,
    elu: elu.utilization,
  }
}
let lastElu = performance.eventLoopUtilization()

async function stop() {
  for (const n of running) n.membership.stop()
  await Promise.allSettled(running.map((n) => n.mesh.stop()))
  send({ type: 'stopped' })
  process.exit(0)
}

process.on('message', (msg) => {
  switch (msg.type) {
    case 'start':
      start(msg).catch((err) => {
        send({ type: 'error', error: String(err?.stack ?? err) })
      })
      return
    case 'view':
      send({ type: 'view', nodes: view(msg.flaps === true) })
      return
    case 'counters':
      send({ type: 'counters', ...counters() })
      return
    case 'stop':
      void stop()
  }
})
// the parent went away: nothing here is worth keeping
process.on('disconnect', () => process.exit(0))
send({ type: 'loaded' })
