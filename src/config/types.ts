// The arbiter's configuration after loading and validation: frozen, complete, no optionals
// left to guess at the point of use. Produced only by ./load.ts.

export type ResolverStrategy = 'skip' | 'off'
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
}

/** Test-only: points of a proposal at which the coordinator kills itself (fault suite). */
export const CRASH_POINTS = ['prepare-sent', 'some-acks', 'decision', 'some-commits'] as const
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
  readonly resolver: ResolverStrategy
  readonly mesh?: MeshConfig
  readonly logLevel: LogLevel
  /** test-only hooks (the fault suite); never set in production configs */
  readonly testing?: { readonly crashAt?: CrashPoint; readonly routes?: boolean }
  /** where the config was read from, for messages */
  readonly source: string
  /** 'json' or 'ini' (TRAKTOR's arbiter.conf) */
  readonly format: 'json' | 'ini'
}
