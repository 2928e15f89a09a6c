// One arbiter: its parts started in dependency order and stopped in reverse.
import { arbiterRoutes } from './api/routes/arbiter.js'
import { ApiServer } from './api/server.js'
import type { Config } from './config/types.js'
import type { Logger } from './log.js'
import { LocalNode } from './postgres/local.js'
import { Resolver } from './resolver/resolver.js'

export interface ArbiterInit {
  config: Config
  log: Logger
}

type State = { kind: 'stopped' } | { kind: 'running' }

export class Arbiter {
  readonly config: Config
  readonly local: LocalNode
  readonly resolver: Resolver
  readonly api: ApiServer
  private readonly log: Logger
  private state: State = { kind: 'stopped' }

  constructor(init: ArbiterInit) {
    const { config, log } = init
    this.config = config
    this.log = log
    this.local = new LocalNode({
      nodeId: config.nodeId,
      conninfo: config.postgres,
      log,
      ...(config.peerPassword === undefined ? {} : { peerPassword: config.peerPassword }),
    })
    this.resolver = new Resolver({
      local: this.local,
      strategy: config.resolver,
      intervalMs: config.checkIntervalMs,
      log,
    })
    this.api = new ApiServer({
      config: config.api,
      apiKey: config.api.apiKey,
      publicEndpoints: config.api.publicEndpoints,
      log,
      routes: [arbiterRoutes(this.local)],
      health: async () => {
        try {
          await this.local.db.query('SELECT 1')
          return { ok: true, detail: { node: config.nodeId, postgres: 'reachable' } }
        } catch (err) {
          return { ok: false, detail: { node: config.nodeId, postgres: (err as Error).message } }
        }
      },
    })
  }

  async start(): Promise<void> {
    if (this.state.kind === 'running') return
    await this.local.start()
    // with resolver 'off' the loop still records conflicts and re-enables after a lost publisher
    this.resolver.start()
    await this.api.start()
    this.state = { kind: 'running' }
    this.log.info(
      {
        mode: this.config.mesh ? 'mesh' : 'standalone',
        api: this.api.url,
        resolver: this.config.resolver,
      },
      'arbiter started',
    )
  }

  async stop(): Promise<void> {
    if (this.state.kind !== 'running') return
    this.state = { kind: 'stopped' }
    await this.api.stop()
    await this.resolver.stop()
    await this.local.stop()
    this.log.info('arbiter stopped')
  }
}
