// The rooms of src/ (ARCHITECTURE.md): which folder may import which, which folder alone talks
// to each outside system, and no SQL text outside src/postgres/. A change that crosses a wall
// fails here, naming the file and the import.
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'

const SRC = path.resolve(import.meta.dirname, '../../src')

/** What each room may import from other rooms ('type' = `import type` only). */
const ALLOWED: Record<string, string[]> = {
  'errors.ts': [],
  'version.ts': [],
  'compat.ts': [],
  'log.ts': ['config:type'],
  // stopping parts in order, with a watchdog that names a part slow to stop
  'lifecycle.ts': ['log.ts:type'],
  // the one poll-with-a-deadline loop (demo, tests, benchmarks, soak)
  'wait.ts': [],
  // periodic loops on a shared beat: loops of dividing periods wake the process together
  'beat.ts': [],
  // how much more slowly a large mesh probes and judges silence: liveness and detector agree
  'patience.ts': [],
  // the libpq connection-string parser: pure, for every room that reads or writes one
  libpq: ['errors.ts'],
  // postgres/ident.ts is pure (relation names: parse and quote), for the per-table config keys
  config: ['errors.ts', 'libpq', 'postgres/ident.ts'],
  postgres: ['beat.ts', 'config', 'errors.ts', 'libpq', 'log.ts:type'],
  mesh: ['beat.ts', 'config', 'errors.ts', 'libpq', 'log.ts:type', 'patience.ts'],
  cluster: [
    'beat.ts',
    'config:type',
    'errors.ts',
    'lifecycle.ts',
    'log.ts:type',
    'mesh:type',
    'patience.ts',
    'postgres',
  ],
  resolver: ['beat.ts', 'config:type', 'errors.ts', 'log.ts:type', 'postgres'],
  metrics: ['cluster:type', 'log.ts:type', 'postgres:type'],
  api: ['cluster:type', 'config:type', 'errors.ts', 'log.ts:type', 'postgres', 'version.ts'],
  'arbiter.ts': [
    'api',
    'cluster',
    'config',
    'errors.ts',
    'lifecycle.ts',
    'log.ts',
    'mesh',
    'metrics',
    'postgres',
    'resolver',
    'version.ts',
  ],
  ctl: ['api:type', 'config', 'errors.ts', 'libpq', 'postgres', 'version.ts'],
  demo: ['arbiter.ts', 'config', 'errors.ts', 'log.ts', 'mesh', 'postgres', 'wait.ts'],
  'main.ts': [
    'arbiter.ts',
    'config',
    'ctl',
    'demo',
    'errors.ts',
    'log.ts',
    'mesh',
    'version.ts',
    'compat.ts',
  ],
}

/** The one room that may import each outside system's packages. */
const OWNERS: Array<[RegExp, string]> = [
  [/^pg$/, 'postgres'],
  [/^pino/, 'log.ts'],
  [/^(fastify|@fastify\/)/, 'api'],
  [/^(libp2p|@libp2p\/|@chainsafe\/)/, 'mesh'],
]

function files(dir = SRC): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    return e.isDirectory() ? files(p) : e.name.endsWith('.ts') ? [p] : []
  })
}

const roomOf = (file: string) => path.relative(SRC, file).split(path.sep)[0] as string

function imports(file: string): Array<{ from: string; typeOnly: boolean }> {
  const text = fs.readFileSync(file, 'utf8')
  return [
    ...text.matchAll(/^(?:import|export)\s+(type\s+)?(?:[\s\S]*?\s+from\s+)?'([^']+)'/gm),
    ...text.matchAll(/import\('([^']+)'\)/g),
  ].map((m) =>
    m.length === 3
      ? { from: m[2] as string, typeOnly: m[1] !== undefined }
      : { from: m[1] as string, typeOnly: false },
  )
}

describe('the rooms of src/', () => {
  const all = files()

  it('each room imports only the rooms below it', () => {
    const crossings: string[] = []
    for (const f of all) {
      const room = roomOf(f)
      const allowed = ALLOWED[room]
      if (!allowed) {
        crossings.push(`${room}: a new room; add it to ARCHITECTURE.md and this test`)
        continue
      }
      for (const { from, typeOnly } of imports(f)) {
        if (!from.startsWith('.')) continue
        const file = path.resolve(path.dirname(f), from).replace(/\.js$/, '.ts')
        const target = roomOf(file)
        if (target === room) continue
        if (allowed.includes(target) || allowed.includes(path.relative(SRC, file))) continue
        if (typeOnly && allowed.includes(`${target}:type`)) continue
        crossings.push(`${path.relative(SRC, f)} imports ${from}${typeOnly ? ' (types)' : ''}`)
      }
    }
    expect(crossings).toEqual([])
  })

  it('one room owns each outside system', () => {
    const trespass: string[] = []
    for (const f of all) {
      for (const { from, typeOnly } of imports(f)) {
        const owner = OWNERS.find(([re]) => re.test(from))?.[1]
        if (owner && owner !== roomOf(f) && !typeOnly)
          trespass.push(`${path.relative(SRC, f)} imports ${from} (only ${owner} may)`)
      }
    }
    expect(trespass).toEqual([])
  })

  it('the pools stay in src/postgres/ (LocalNode keeps them private and hands out bound stores)', () => {
    const reaching = all
      .filter((f) => roomOf(f) !== 'postgres')
      .flatMap((f) => {
        const text = fs.readFileSync(f, 'utf8')
        const named = [
          ...text.matchAll(/import\s+(?:type\s+)?\{([^}]*)\}\s+from\s+'[./]+postgres\/db\.js'/g),
        ]
          .flatMap((m) =>
            (m[1] as string).split(',').map((n) => n.replace(/^\s*type\s+/, '').trim()),
          )
          .filter((n) => n !== '' && n !== 'HeldSession')
        return named.map((n) => `${path.relative(SRC, f)} imports ${n} from postgres/db.ts`)
      })
    expect(reaching).toEqual([])
  })

  it('no SQL text outside src/postgres/', () => {
    // a string that starts like a statement: what PostgreSQL would run
    const sql =
      /[`'"]\s*(SELECT|INSERT INTO|UPDATE\s+\S+\s+SET|DELETE FROM|CREATE (TABLE|ROLE|SCHEMA|DATABASE|PUBLICATION|SUBSCRIPTION)|ALTER (TABLE|SUBSCRIPTION|PUBLICATION|SYSTEM)|DROP (TABLE|SUBSCRIPTION|PUBLICATION))\b/
    // printed for the user to type into psql, never run by us
    const printedOnly = new Set(['demo/hints.ts'])
    const found = all
      .filter((f) => roomOf(f) !== 'postgres' && !printedOnly.has(path.relative(SRC, f)))
      .flatMap((f) =>
        fs
          .readFileSync(f, 'utf8')
          .split('\n')
          .map((line, i) => ({ line, i }))
          .filter(({ line }) => sql.test(line) && !/^\s*(\/\/|\*)/.test(line))
          .map(({ line, i }) => `${path.relative(SRC, f)}:${i + 1}: ${line.trim()}`),
      )
    expect(found).toEqual([])
  })
})
