// No row is lost while a table is added to the replicaset. PostgreSQL silently drops rows
// written to a newly published table on one node before its peers refresh their
// subscriptions; the write fence closes that window. Writers on every node insert without
// pause while one cluster call adds the table. Afterwards every row is on all nodes: those
// written before the table joined by the merge that follows (each node held other rows), the
// others by replication. Without the fence (and so without the merge) rows are lost.
import pg from 'pg'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { call, DB, MeshCluster, TESTING_ENV, waitFor } from '../fixtures/mesh-cluster.js'

let c: MeshCluster
const IDS = [0, 1, 2]

interface Written {
  id: string
  node: number
  /** when the INSERT was sent, relative to the call */
  phase: 'before' | 'during' | 'after'
}

beforeAll(async () => {
  c = await MeshCluster.create(3, 'fence')
  for (const i of IDS) {
    for (const t of ['w', 'unfenced']) {
      await c.q(
        i,
        `CREATE TABLE demo.${t} (id text PRIMARY KEY, node int NOT NULL, at timestamptz DEFAULT clock_timestamp())`,
      )
      await c.q(i, `ALTER TABLE demo.${t} OWNER TO traktor_arbiter`)
    }
  }
  await Promise.all(IDS.map((i) => c.start(i)))
  await c.waitMeshed(IDS)
  await c.waitSubscribed(IDS)
})

afterAll(async () => {
  await c?.destroy()
})

/**
 * Writers insert on every node while one call adds `table`; returns the rows that are not where
 * they must be (on every node, or — written before its writer published the table — only there).
 */
async function addUnderWrites(
  table: string,
): Promise<{ misplaced: string[]; onlyWriter: string[]; answer: Record<string, any> }> {
  let phase: Written['phase'] = 'before'
  let stop = false
  const written: Written[] = []
  const errors: string[] = []
  const clients = await Promise.all(
    IDS.map(async (i) => {
      const node = c.node(i)
      const client = new pg.Client({
        host: '127.0.0.1',
        port: node.pg.port,
        database: DB,
        user: 'postgres',
        password: node.pg.superPassword,
      })
      await client.connect()
      return client
    }),
  )
  const writers = IDS.map(async (i) => {
    const client = clients[i] as pg.Client
    for (let seq = 0; !stop; seq++) {
      const id = `${i}-${seq}`
      const p = phase
      try {
        await client.query(`INSERT INTO demo.${table} (id, node) VALUES ($1, $2)`, [id, i])
        written.push({ id, node: i, phase: p })
      } catch (err) {
        errors.push(`${id}: ${(err as Error).message}`)
      }
    }
  })
  let r: Awaited<ReturnType<typeof call>>
  try {
    await waitFor(() => written.length > 100, 10_000, 'writers running')
    phase = 'during'
    r = await call(c.api(1), 'PUT', `/v1/cluster/replicaset/demo.${table}`)
    phase = 'after'
    expect(r.status, JSON.stringify(r.json)).toBe(201)
    const afterStart = written.length
    await waitFor(() => written.length > afterStart + 300, 10_000, 'writes after the call')
  } finally {
    // whatever failed above: the writers stop (left running, they spin on a closed server
    // after the file's teardown and the worker never ends)
    stop = true
    await Promise.all(writers)
    await Promise.all(clients.map((cl) => cl.end()))
  }
  expect(errors).toEqual([])

  // wait until every row written after the call is everywhere (or time out: a loss)
  const after = written.filter((w) => w.phase === 'after')
  const onNode = async (i: number) =>
    new Set((await c.q(i, `SELECT id FROM demo.${table}`)).map((x) => x.id as string))
  await waitFor(
    async () => {
      for (const i of IDS) {
        const have = await onNode(i)
        if (!after.every((w) => have.has(w.id))) return false
      }
      return true
    },
    20_000,
    'rows written after the call on every node',
  ).catch(async (err: Error) => {
    const state = await Promise.all(
      IDS.map(async (i) => {
        const subs = await c.q(i, `SELECT subname, subenabled FROM pg_subscription ORDER BY 1`)
        const missing = after.filter((w) => w.node !== i).length
        return `node ${i}: ${JSON.stringify(subs)} (${missing} rows of others expected)\n${c.problems(i)}`
      }),
    )
    throw new Error(`${err.message}\n${state.join('\n')}`)
  })
  const sets = await Promise.all(IDS.map(onNode))
  // when the table joined each node's publication, and when each row committed on its writer
  // (both on the writer's clock: track_commit_timestamp)
  const publishedAt = await Promise.all(
    IDS.map(async (i) => {
      const [p] = await c.q(
        i,
        `SELECT pg_xact_commit_timestamp(pr.xmin) AS at FROM pg_publication_rel pr
           JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = 'trktr_pub'
             AND pr.prrelid = $1::regclass`,
        [`demo.${table}`],
      )
      if (!p) throw new Error(`demo.${table} is not published on node ${i}`)
      return (p.at as Date).getTime()
    }),
  )
  const committedAt = new Map<string, number>()
  for (const i of IDS) {
    const rows = await c.q(
      i,
      `SELECT id, pg_xact_commit_timestamp(xmin) AS at FROM demo.${table} WHERE node = $1`,
      [i],
    )
    for (const row of rows) committedAt.set(row.id as string, (row.at as Date).getTime())
  }
  const misplaced: string[] = []
  const onlyWriters: string[] = []
  for (const w of written) {
    const on = IDS.filter((i) => sets[i]?.has(w.id))
    const everywhere = on.length === IDS.length
    const onlyWriter = on.length === 1 && on[0] === w.node
    const beforePublished = (committedAt.get(w.id) ?? 0) < (publishedAt[w.node] ?? 0)
    if (onlyWriter) onlyWriters.push(`${w.id} (${w.phase})`)
    if (!everywhere && !onlyWriter)
      misplaced.push(`${w.id} (${w.phase}) on ${on.join(',') || 'none'}`)
    if (onlyWriter && !beforePublished)
      misplaced.push(
        `${w.id} (${w.phase}) only on its writer, written after it published the table`,
      )
    if (w.phase === 'after' && !everywhere)
      misplaced.push(`${w.id} written after the call, on ${on.join(',')}`)
  }
  const counts = { before: 0, during: 0, after: 0 }
  for (const w of written) counts[w.phase]++
  // the test must have exercised the window: writes happened while the call ran
  expect(counts.during).toBeGreaterThan(0)
  console.info(
    `fence test (${table}): ${written.length} rows written (${JSON.stringify(counts)}), call took ${r.json.duration_ms} ms, ${misplaced.length} misplaced`,
  )
  return { misplaced, onlyWriter: onlyWriters, answer: r.json }
}

describe('write fence', () => {
  it('loses no row while a table is added under continuous writes on every node', async () => {
    const { misplaced, onlyWriter, answer } = await addUnderWrites('w')
    expect(misplaced).toEqual([])
    // each node wrote its own rows before the call: the table joined holding different rows on
    // every node and was merged, so the rows written before it are everywhere too
    expect(answer.merged?.why, JSON.stringify(answer)).toMatch(/holds different rows/)
    expect(answer.merged?.error).toBeUndefined()
    expect(onlyWriter).toEqual([])
  })

  it('without the fence (test hook testing.fence = false) the same run loses rows', async () => {
    for (const i of IDS) {
      await c.node(i).arbiter?.stop()
      await c.start(i, { testing: { fence: false } }, TESTING_ENV)
    }
    await c.waitMeshed(IDS)
    const { misplaced } = await addUnderWrites('unfenced')
    expect(misplaced.join('\n')).toMatch(/only on its writer, written after it published/)
  })
})
