// The arbiter's configuration after loading and validation: frozen, complete, no optionals
// left to guess at the point of use. Produced only by ./load.ts.

/** lww: row-level last writer wins (mesh default); skip: TRAKTOR's (standalone default) */
export type ResolverStrategy = 'lww' | 'skip' | 'off'
export const RESOLVER_STRATEGIES = ['lww', 'skip', 'off'] as const
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

export interface TlsConfig {
  readonly certFile: string
  readonly keyFile: string
}

export interface ApiConfig {
  /** host:port the HTTP server listens on */
  readonly host: string
  readonly port: number
  readonly apiKey: string
  readonly tls?: TlsConfig
  /** /metrics, /healthz and /docs answer without the API key (default true) */
  readonly publicEndpoints: boolean
}

export interface MeshConfig {
  readonly listen: readonly string[]
  /** multiaddrs, already read from bootstrap.json when a path was given */
  readonly bootstrap: readonly string[]
  readonly identityFile: string
  readonly pskFile?: string
  readonly insecure: boolean
  readonly cluster: string
  readonly heartbeatMs: number
  readonly suspectAfterMs: number
  readonly deadAfterMs: number
  /** a full mesh up to this many members, sparse past it (default: the mesh's, 64) */
  readonly fullMeshUpTo?: number
}

/** how a new node joins (README "How a node joins") */
export const JOIN_MODES = ['empty-only', 'copy', 'no-copy'] as const
export type JoinMode = (typeof JOIN_MODES)[number]

/** Test-only: points of a proposal at which the coordinator kills or freezes itself (fault suite). */
// some-commits: after every node published (a schema change: committed); one-publish: after
// exactly one member published (committed its schema change); ddl-drained: a schema change's
// nodes are fenced and drained, nothing prepared; ddl-prepared: prepared everywhere, undecided
export const CRASH_POINTS = [
  'prepare-sent',
  'some-acks',
  'decision',
  'some-commits',
  'one-publish',
  'ddl-drained',
  'ddl-prepared',
] as const
export type CrashPoint = (typeof CRASH_POINTS)[number]

export interface Config {
  readonly nodeId: number
  /** libpq key/value string (URIs are converted) for the arbiter's own connection */
  readonly postgres: string
  /** how peers' PostgreSQL reach this one (no password) */
  readonly advertisePostgres: string
  readonly peerPassword?: string
  readonly api: ApiConfig
  readonly checkIntervalMs: number
  /** the background consistency check's period in mesh mode (ms); 0 = off */
  readonly checkEveryMs: number
  /** mesh mode: a peer whose slot here was lost copies the cluster's data again by itself */
  readonly healLostSlots: boolean
  /**
   * lww: the arbiter's role logs DEBUG1 in its database, so apply workers report the UPDATEs
   * and DELETEs they skip for want of the row (missing-rows.ts). At that level PostgreSQL 17
   * also logs every apply worker's connection string, password included: off by default
   */
  readonly recordMissingRows: boolean
  readonly resolver: ResolverStrategy
  /**
   * per-table overrides of `resolver`, keyed "schema.table" with both parts as PostgreSQL
   * holds them (case kept, no quotes: the form its log messages name a table in)
   */
  readonly resolvers: Readonly<Record<string, ResolverStrategy>>
  /** node-striped sequences for replicated tables (mesh default stripe, standalone off) */
  readonly sequences: 'stripe' | 'off'
  /** sync: a commit waits until every live, caught-up peer applied it (mesh mode) */
  readonly commit: 'async' | 'sync'
  /** sync: how many peers a commit waits for (absent: every live, caught-up peer) */
  readonly syncQuorum?: number
  /** mesh mode: how a new node joins — copy the cluster's data into empty tables (default) */
  readonly join: JoinMode
  readonly mesh?: MeshConfig
  readonly logLevel: LogLevel
  /** test-only hooks (the fault suite); never set in production configs */
  readonly testing?: {
    readonly crashAt?: CrashPoint
    /** SIGSTOP at this point of the first proposal it coordinates (the test sends SIGCONT) */
    readonly freezeAt?: CrashPoint
    readonly routes?: boolean
    /** false: proposals raise no write fence (the fault suite shows rows are then lost) */
    readonly fence?: boolean
    readonly joinPauseMs?: number
    /** the lww loop's fallback tick instead of a second */
    readonly lwwTickMs?: number
    /** a joining table's rows hashed at prepare this long instead of 3 s */
    readonly contentHashMs?: number
  }
  /** where the config was read from, for messages */
  readonly source: string
  /** 'json' or 'ini' (TRAKTOR's arbiter.conf) */
  readonly format: 'json' | 'ini'
}

/** The strategy for one table ("schema.table" as PostgreSQL prints it; none: the default). */
export function strategyFor(
  config: Pick<Config, 'resolver' | 'resolvers'>,
  relation: string | undefined,
): ResolverStrategy {
  return (relation === undefined ? undefined : config.resolvers[relation]) ?? config.resolver
}

/** Whether any table resolves row by row (the lww engine and its triggers are needed). */
export function anyLww(config: Pick<Config, 'resolver' | 'resolvers'>): boolean {
  return config.resolver === 'lww' || Object.values(config.resolvers).includes('lww')
}
