// Gauges and counters of the mesh and the cluster layer (members, join copy, proposals, sync
// mode, gossip), read from their parts at scrape time.
import client from 'prom-client'
import type { MetricsSources } from './sources.js'

export function meshGauges(r: client.Registry, src: MetricsSources): void {
  new client.Gauge({
    name: 'traktor_members',
    help: 'Mesh members this arbiter sees, by state (itself excluded)',
    labelNames: ['state'],
    registers: [r],
    collect() {
      const counts = src.members?.() ?? {}
      for (const s of ['alive', 'suspect', 'dead', 'duplicate'])
        this.set({ state: s }, counts[s] ?? 0)
    },
  })
  new client.Gauge({
    name: 'traktor_join_copying',
    help: '1 while this node copies the cluster data before it becomes ready (issue 12)',
    registers: [r],
    collect() {
      this.set(src.join?.().copying ? 1 : 0)
    },
  })
  new client.Gauge({
    name: 'traktor_join_progress_percent',
    help: "How far this node's copy of the cluster data is (100 once done)",
    registers: [r],
    collect() {
      const j = src.join?.()
      if (j) this.set(j.percent)
    },
  })
  new client.Gauge({
    name: 'traktor_join_rows_copied',
    help: "Rows this node's last copy of the cluster data has copied",
    registers: [r],
    collect() {
      const j = src.join?.()
      if (j) this.set(j.rowsCopied)
    },
  })
  new client.Gauge({
    name: 'traktor_join_donor_pause_seconds',
    help: "How long the donor's writers waited on the SHARE lock of this node's last snapshot",
    registers: [r],
    collect() {
      const ms = src.join?.().donorPauseMs
      if (ms !== undefined) this.set(ms / 1000)
    },
  })
  new client.Gauge({
    name: 'traktor_mesh_isolated',
    help: '1 while this arbiter reaches no peer of its mesh (wrong swarm key, dead bootstrap peer, every member gone)',
    registers: [r],
    collect() {
      this.set(src.isolated?.() === true ? 1 : 0)
    },
  })
  new client.Gauge({
    name: 'traktor_mesh_connected_peers',
    help: 'Mesh peers with an open connection to this arbiter (every member in a full mesh, a few in a sparse one)',
    registers: [r],
    collect() {
      const c = src.connections?.()
      if (c) this.set(c.peers)
    },
  })
  new client.Gauge({
    name: 'traktor_mesh_sparse',
    help: '1 while the mesh is sparse (more members than mesh.fullMeshUpTo): ring neighbours only',
    registers: [r],
    collect() {
      const c = src.connections?.()
      if (c) this.set(c.sparse ? 1 : 0)
    },
  })
  new client.Counter({
    name: 'traktor_mesh_dial_failures_total',
    help: 'Dials to mesh peers and bootstrap addresses that failed',
    registers: [r],
    collect() {
      const n = src.dialFailures?.()
      if (n === undefined) return
      this.reset()
      this.inc(n)
    },
  })
  new client.Gauge({
    name: 'traktor_proposals_in_doubt',
    help: 'Proposals prepared here whose outcome no reachable member knows',
    registers: [r],
    collect() {
      this.set(src.inDoubt?.() ?? 0)
    },
  })
  new client.Gauge({
    name: 'traktor_commit_sync',
    help: 'The commit mode on this node: 1 sync, 0 async (mesh mode)',
    registers: src.sync ? [r] : [],
    collect() {
      this.set(src.sync?.().sync ? 1 : 0)
    },
  })
  new client.Gauge({
    name: 'traktor_sync_standbys',
    help: 'Sync mode: peers every commit on this node waits for (0 in async mode)',
    registers: src.sync ? [r] : [],
    collect() {
      this.set(src.sync?.().standbys.length ?? 0)
    },
  })
  new client.Gauge({
    name: 'traktor_sync_degraded',
    help: 'Sync mode: 1 while some peer is not waited for (dead, catching up, not streaming)',
    registers: src.sync ? [r] : [],
    collect() {
      this.set(src.sync?.().degraded ? 1 : 0)
    },
  })
  let cyclesReported = 0
  new client.Counter({
    name: 'traktor_sync_cycles_broken_total',
    help: "Sync mode: write-write cycles broken by releasing this node's waiting commits",
    registers: src.sync ? [r] : [],
    collect() {
      const n = src.sync?.().cyclesBroken ?? 0
      if (n > cyclesReported) this.inc(n - cyclesReported)
      cyclesReported = Math.max(n, cyclesReported)
    },
  })
  let degradedReported = 0
  new client.Counter({
    name: 'traktor_sync_degraded_seconds_total',
    help: 'Sync mode: time spent with some peer not waited for',
    registers: src.sync ? [r] : [],
    collect() {
      // a counter only goes up: add what passed since the last scrape
      const s = src.sync?.().degradedSeconds ?? 0
      if (s > degradedReported) this.inc(s - degradedReported)
      degradedReported = Math.max(s, degradedReported)
    },
  })
  new client.Gauge({
    name: 'traktor_proposals_stuck',
    help: 'Committed changes this arbiter coordinated whose steps keep failing on some node',
    registers: [r],
    collect() {
      this.set(src.stuck?.() ?? 0)
    },
  })
  for (const [key, name, help] of [
    ['in', 'traktor_gossip_messages_received_total', 'Gossip messages accepted, by topic'],
    ['out', 'traktor_gossip_messages_sent_total', 'Gossip messages published, by topic'],
    [
      'rejected',
      'traktor_gossip_messages_rejected_total',
      'Gossip messages rejected by validation, by topic',
    ],
  ] as const) {
    new client.Counter({
      name,
      help,
      labelNames: ['topic'],
      registers: [r],
      collect() {
        const g = src.gossip?.()
        if (!g) return
        this.reset()
        for (const [topic, n] of Object.entries(g[key])) this.inc({ topic }, n)
      },
    })
  }
}
