// The operations add-ons in contrib/ (Grafana dashboard, Prometheus rules and scrape example,
// systemd unit) must only name metrics the arbiter really exports, and the Prometheus files
// must pass promtool. The exported names come from a real Metrics instance, so renaming a
// metric without updating contrib/ fails here.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { beforeAll, describe, expect, it } from 'vitest'
import { silentLogger } from '../../src/log.js'
import { Metrics } from '../../src/metrics/metrics.js'

const root = fileURLToPath(new URL('../../', import.meta.url))
const DASHBOARD = join(root, 'contrib/grafana/traktor-cluster.json')
const RULES = join(root, 'contrib/prometheus/traktor-alerts.yml')
const SCRAPE_EXAMPLE = join(root, 'contrib/prometheus/prometheus.yml.example')
const UNIT = join(root, 'contrib/systemd/traktor@.service')

// biome-ignore lint/suspicious/noTemplateCurlyInString: Grafana's import placeholder, literally
const DS_UID = '${DS_PROMETHEUS}'
const METRIC_NAME = /\b(traktor_[a-z0-9_]+|process_[a-z_]+|nodejs_[a-z_]+)\b/g
const SERIES_SUFFIX = /_(bucket|sum|count)$/

/** name → type, from the `# TYPE name type` lines of a real scrape */
let exported: Map<string, string>

beforeAll(async () => {
  const m = new Metrics(
    {
      nodeId: 0,
      version: 'test',
      members: () => ({ alive: 1 }),
      gossip: () => ({
        in: { membership: 1 },
        out: { membership: 1 },
        rejected: { membership: 0 },
      }),
      inDoubt: () => 0,
      subscriptions: async () => [{ name: 'trktr_sub_0_1', enabled: true, applyErrors: 0 }],
      lag: async () => [{ subscription: 'trktr_sub_1_0', bytes: 0, seconds: 0 }],
      conflictsPending: async () => 0,
    },
    silentLogger(),
  )
  m.memberFlapped()
  m.proposal('committed', 0.01)
  m.conflict('insert_exists', 'demo.t', 'skip')
  m.reenabledSubscription('trktr_sub_0_1')
  exported = new Map()
  for (const line of (await m.text()).split('\n')) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (t) exported.set(t[1]!, t[2]!)
  }
})

/** Every metric name an expression mentions. */
function metricNames(expr: string): string[] {
  return [...new Set([...expr.matchAll(METRIC_NAME)].map((m) => m[1]!))]
}

/**
 * Why `name` is not something Prometheus gets from the arbiter, or undefined if it is. A
 * histogram's _bucket/_sum/_count series count as the histogram; its bare name has no series.
 */
function problemWith(name: string): string | undefined {
  const type = exported.get(name)
  if (type === 'histogram' || type === 'summary')
    return `${name} is a ${type}: query ${name}_bucket, _sum or _count`
  if (type !== undefined) return undefined
  const base = name.replace(SERIES_SUFFIX, '')
  const baseType = exported.get(base)
  if (base !== name && (baseType === 'histogram' || baseType === 'summary')) {
    if (baseType === 'summary' && name.endsWith('_bucket')) return `${base} has no buckets`
    return undefined
  }
  return `${name} is not exported by the arbiter`
}

/** `{where, name, problem}` for every unknown metric in the given expressions. */
function unknownMetrics(exprs: Array<{ where: string; expr: string }>) {
  const out: Array<{ where: string; name: string; problem: string }> = []
  for (const { where, expr } of exprs)
    for (const name of metricNames(expr)) {
      const problem = problemWith(name)
      if (problem) out.push({ where, name, problem })
    }
  return out
}

function promtool(...args: string[]) {
  const r = spawnSync('promtool', args, { encoding: 'utf8', timeout: 30_000 })
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code
    throw new Error(
      code === 'ENOENT'
        ? 'promtool is not installed (or not on PATH): install Prometheus promtool to run this test'
        : `promtool ${args.join(' ')} could not run: ${r.error.message}`,
    )
  }
  return { status: r.status, output: `${r.stdout}${r.stderr}` }
}

// ---------------------------------------------------------------------------- dashboard

interface Target {
  expr?: string
  refId?: string
  datasource?: { type?: string; uid?: string }
}
interface Panel {
  id: number
  type: string
  title: string
  datasource?: { type?: string; uid?: string }
  targets?: Target[]
  panels?: Panel[]
  gridPos: { h: number; w: number; x: number; y: number }
}

const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as {
  __inputs: Array<{ name: string; type: string; pluginId: string }>
  schemaVersion: number
  uid: string
  title: string
  panels: Panel[]
  templating: { list: Array<{ name: string; type: string; definition?: string }> }
}

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])])
}
const panels = allPanels(dashboard.panels)
const dashboardExprs = [
  ...panels.flatMap((p) =>
    (p.targets ?? []).map((t) => ({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr ?? '' })),
  ),
  ...dashboard.templating.list.map((v) => ({
    where: `variable ${v.name}`,
    expr: v.definition ?? '',
  })),
]
const exprOf = (title: string) =>
  panels
    .filter((p) => p.title === title)
    .flatMap((p) => p.targets ?? [])
    .map((t) => t.expr ?? '')
    .join('\n')

describe('contrib/grafana/traktor-cluster.json', () => {
  it('is an importable dashboard with a Prometheus datasource input and job/instance variables', () => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(36)
    expect(dashboard.uid).toBe('traktor-cluster')
    expect(dashboard.__inputs).toContainEqual(
      expect.objectContaining({
        name: 'DS_PROMETHEUS',
        type: 'datasource',
        pluginId: 'prometheus',
      }),
    )
    const vars = dashboard.templating.list.map((v) => v.name)
    expect(vars).toEqual(expect.arrayContaining(['job', 'instance']))
    const ids = panels.map((p) => p.id)
    expect(new Set(ids).size).toBe(ids.length)
    for (const p of panels.filter((p) => p.type !== 'row')) {
      expect(p.datasource?.uid, p.title).toBe(DS_UID)
      expect(p.targets?.length, p.title).toBeGreaterThan(0)
      for (const t of p.targets ?? []) {
        expect(t.datasource?.uid, p.title).toBe(DS_UID)
        expect(t.expr, p.title).toMatch(/\S/)
      }
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24)
    }
  })

  it('filters every traktor query by the job and instance variables', () => {
    for (const { where, expr } of dashboardExprs.filter((e) => e.where.startsWith('panel')))
      for (const selector of expr.match(/\b(traktor_|process_|nodejs_|up\b)[a-z0-9_]*\{[^}]*\}/g) ??
        [])
        expect(selector, where).toMatch(/job=~"\$job",instance=~"\$instance"/)
  })

  it('has the panels operators need', () => {
    const has = (title: string, ...needles: string[]) => {
      const expr = exprOf(title)
      expect(expr, `panel "${title}"`).not.toBe('')
      for (const n of needles) expect(expr, `panel "${title}"`).toContain(n)
    }
    has('Members by state', 'traktor_members')
    has('Member flaps', 'rate(traktor_member_flaps_total')
    has('Subscription lag (time)', 'traktor_subscription_lag_seconds')
    has('Subscription lag (bytes)', 'traktor_subscription_lag_bytes')
    has('Subscriptions enabled', 'traktor_subscription_enabled')
    has('Subscription apply errors', 'traktor_subscription_apply_errors')
    has('Conflicts by outcome', 'rate(traktor_conflicts_total', 'by (outcome)')
    has('Conflicts pending', 'traktor_conflicts_pending')
    for (const q of ['0.5', '0.95', '0.99'])
      has(
        'Proposal latency',
        `histogram_quantile(${q}, sum by (le) (rate(traktor_proposal_duration_seconds_bucket`,
      )
    expect(exprOf('Proposal latency')).toMatch(/_bucket\{[^}]*\}\[5m\]/)
    has('Proposals by outcome', 'rate(traktor_proposals_total', 'by (outcome)')
    has('Proposals in doubt', 'traktor_proposals_in_doubt')
    has('Gossip rejected', 'rate(traktor_gossip_messages_rejected_total')
    has('Rows differing (last check)', 'traktor_check_divergent_rows')
    has('Replication slots lost or unreserved', 'traktor_slot_wal_status')
    has('Memory', 'process_resident_memory_bytes')
    has('CPU', 'rate(process_cpu_seconds_total')
  })

  it('names only metrics the arbiter exports', () => {
    expect(exported.size).toBeGreaterThan(0)
    expect(unknownMetrics(dashboardExprs)).toEqual([])
  })

  it('has expressions that Prometheus parses', () => {
    // promtool has no expression checker; recording rules built from the queries do
    const dir = mkdtempSync(join(tmpdir(), 'traktor-dashboard-'))
    try {
      const file = join(dir, 'dashboard-exprs.yml')
      const rules = dashboardExprs.filter((e) => e.where.startsWith('panel'))
      const body = rules
        .map(({ expr }, i) => {
          const promql = expr
            .replaceAll('$__rate_interval', '5m')
            .replaceAll('$__range', '6h')
            .replaceAll('$job', '.*')
            .replaceAll('$instance', '.*')
          return `      - record: dashboard:expr_${i}\n        expr: ${JSON.stringify(promql)}\n`
        })
        .join('')
      writeFileSync(file, `groups:\n  - name: dashboard\n    rules:\n${body}`)
      const r = promtool('check', 'rules', file)
      expect(r.output, r.output).toContain(`SUCCESS: ${rules.length} rules found`)
      expect(r.status, r.output).toBe(0)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})

// ---------------------------------------------------------------------------- alert rules

interface Alert {
  name: string
  expr: string
  for?: string
  severity?: string
  block: string
}

/**
 * A purpose-built line scan of the rules file (no YAML library): each `- alert:` line opens a
 * rule; `expr:` is a one-line plain or quoted scalar, or a `|`/`>` block below it.
 */
function readAlerts(text: string): Alert[] {
  const lines = text.split('\n')
  const alerts: Alert[] = []
  let current: Alert | undefined
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    const alert = /^\s*- alert:\s*(\S+)\s*$/.exec(line)
    if (alert) {
      current = { name: alert[1]!, expr: '', block: '' }
      alerts.push(current)
    } else if (/^\s*- (record|name):/.test(line)) {
      current = undefined
    }
    if (!current) continue
    current.block += `${line}\n`
    const expr = /^(\s*)expr:\s*(.*)$/.exec(line)
    if (expr) {
      let value = expr[2]!.trim()
      if (/^[|>][-+]?$/.test(value)) {
        const indent = expr[1]!.length
        const body: string[] = []
        while (i + 1 < lines.length) {
          const next = lines[i + 1]!
          if (next.trim() !== '' && next.search(/\S/) <= indent) break
          body.push(next.trim())
          current.block += `${next}\n`
          i++
        }
        value = body.join(' ').trim()
      } else if (/^(['"]).*\1$/.test(value)) {
        value = value.slice(1, -1)
      }
      current.expr = value
    }
    const forLine = /^\s*for:\s*(\S+)/.exec(line)
    if (forLine) current.for = forLine[1]
    const severity = /^\s*severity:\s*(\S+)/.exec(line)
    if (severity) current.severity = severity[1]
  }
  return alerts
}

const rulesText = readFileSync(RULES, 'utf8')
const alerts = readAlerts(rulesText)

describe('contrib/prometheus/traktor-alerts.yml', () => {
  it('passes promtool check rules', () => {
    const r = promtool('check', 'rules', RULES)
    expect(r.status, r.output).toBe(0)
    expect(r.output).toContain(`SUCCESS: ${alerts.length} rules found`)
  })

  it('has the expected alerts, thresholds and durations', () => {
    const expected: Record<string, { expr: string; for: string }> = {
      TraktorArbiterDown: { expr: 'up{job=~"traktor.*"} == 0', for: '1m' },
      TraktorMemberDead: { expr: 'traktor_members{state="dead"} > 0', for: '1m' },
      TraktorDuplicateNodeId: { expr: 'traktor_members{state="duplicate"} > 0', for: '1m' },
      TraktorMeshIsolated: { expr: 'traktor_mesh_isolated == 1', for: '1m' },
      TraktorGossipRejected: {
        expr: 'rate(traktor_gossip_messages_rejected_total[5m]) > 0',
        for: '10m',
      },
      TraktorProposalInDoubt: { expr: 'traktor_proposals_in_doubt > 0', for: '1m' },
      TraktorSubscriptionDisabled: { expr: 'traktor_subscription_enabled == 0', for: '2m' },
      TraktorReplicationLagHigh: { expr: 'traktor_subscription_lag_seconds > 30', for: '5m' },
      TraktorConflictPendingTooLong: { expr: 'traktor_conflicts_pending > 0', for: '10m' },
      TraktorReplicationSlotLost: {
        expr: 'traktor_slot_wal_status{status=~"lost|unreserved"} == 1',
        for: '1m',
      },
      TraktorNodeUnhealthy: { expr: 'traktor_healthy == 0', for: '5m' },
      TraktorDataDivergence: { expr: 'traktor_check_divergent_rows > 0', for: '1m' },
    }
    expect(alerts.map((a) => a.name).sort()).toEqual(Object.keys(expected).sort())
    for (const a of alerts) {
      expect({ expr: a.expr, for: a.for }, a.name).toEqual(expected[a.name])
    }
  })

  it('gives every alert a severity, a summary, a description with labels and value, a runbook', () => {
    for (const a of alerts) {
      expect(['critical', 'warning', 'info'], a.name).toContain(a.severity)
      expect(a.block, a.name).toMatch(/^\s*summary:/m)
      expect(a.block, a.name).toMatch(/^\s*description:/m)
      expect(a.block, a.name).toMatch(/^\s*runbook:.*Troubleshooting/m)
      const description = a.block.slice(a.block.search(/^\s*description:/m))
      expect(description, a.name).toContain('{{ $labels.')
      expect(description, a.name).toContain('{{ $value')
    }
  })

  it('names only metrics the arbiter exports (and up)', () => {
    expect(alerts.length).toBeGreaterThan(0)
    for (const a of alerts) expect(a.expr, a.name).toMatch(/\S/)
    const exprs = alerts.map((a) => ({ where: a.name, expr: a.expr }))
    expect(unknownMetrics(exprs)).toEqual([])
    // the only name outside the arbiter's own: the scrape health series
    const others = alerts.flatMap((a) =>
      (a.expr.replace(/\{[^}]*\}/g, '{}').match(/\b[a-z_][a-z0-9_]*(?=\s*[{[]|\s*[=!<>])/g) ?? [])
        .filter((n) => !/^(traktor|process|nodejs)_/.test(n))
        .map((n) => `${a.name}: ${n}`),
    )
    for (const o of others) expect(o.split(': ')[1], o).toBe('up')
  })
})

// ---------------------------------------------------------------------------- the rest

describe('contrib/prometheus/prometheus.yml.example', () => {
  it('passes promtool check config and scrapes three arbiters', () => {
    const r = promtool('check', 'config', SCRAPE_EXAMPLE)
    expect(r.status, r.output).toBe(0)
    const text = readFileSync(SCRAPE_EXAMPLE, 'utf8')
    expect(text).toMatch(/job_name:\s*traktor/)
    expect(text.match(/^\s*- [\w.-]+:\d+\s*$/gm)).toHaveLength(3)
  })
})

describe('contrib/systemd/traktor@.service', () => {
  const unit = readFileSync(UNIT, 'utf8')
  const keys = new Map<string, string[]>()
  for (const line of unit.split('\n')) {
    const kv = /^([A-Za-z]+)=(.*)$/.exec(line)
    if (kv) keys.set(kv[1]!, [...(keys.get(kv[1]!) ?? []), kv[2]!])
  }
  const value = (k: string) => keys.get(k)?.at(-1)

  it('runs one arbiter per config name, restarts on failure, stops with SIGTERM', () => {
    expect(value('ExecStart')).toMatch(/\btraktor start --config \/etc\/traktor\/%i\.json$/)
    expect(value('Restart')).toBe('on-failure')
    expect(value('KillSignal')).toBe('SIGTERM')
    expect(value('TimeoutStopSec')).toMatch(/^\d+s?$/)
    expect(value('User')).toBe('traktor')
  })

  it('is hardened, with only the identity directory writable', () => {
    expect(value('NoNewPrivileges')).toBe('yes')
    expect(value('ProtectSystem')).toBe('strict')
    expect(value('PrivateTmp')).toBe('yes')
    expect(value('ReadWritePaths')).toBe('/var/lib/traktor/%i')
    expect(value('StateDirectory')).toBe('traktor/%i')
    // Node's JIT needs W+X pages
    expect(value('MemoryDenyWriteExecute')).not.toBe('yes')
  })
})
