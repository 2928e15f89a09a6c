// libp2p's component logger, silent. libp2p makes a logger (weald's `debug`) for every
// connection, stream and protocol negotiation, and each one asks whether stderr is a terminal
// (an ioctl) though nothing is ever printed unless DEBUG names libp2p: in a 16-member mesh's
// start that was ~4 % of the busiest process. With DEBUG set, libp2p's own loggers are kept.
import type { ComponentLogger, Logger } from '@libp2p/interface'

const nothing = (): void => {}
const silent: Logger = Object.assign(() => {}, {
  error: nothing,
  trace: nothing,
  enabled: false,
  newScope: (): Logger => silent,
})

const quiet: ComponentLogger = { forComponent: () => silent }

/** createLibp2p's `logger` option: silent, or none (libp2p's own) when DEBUG is set. */
export function libp2pLogger(env: NodeJS.ProcessEnv = process.env): { logger?: ComponentLogger } {
  return env.DEBUG ? {} : { logger: quiet }
}
