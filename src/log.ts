// The only place that configures pino. Every part gets a child logger with its component;
// the root logger carries nodeId, so every line has it.
import { type Logger, pino } from 'pino'
import type { LogLevel } from './config/types.js'

export type { Logger }

export interface LoggerInit {
  nodeId?: number
  level?: LogLevel
  /** write to this file descriptor instead of stdout (tests pass 2 or a file) */
  destination?: number | string
}

export function createLogger(init: LoggerInit = {}): Logger {
  const base = init.nodeId === undefined ? {} : { nodeId: init.nodeId }
  return pino(
    { level: init.level ?? 'info', base, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: init.destination ?? 1, sync: true }),
  )
}

/** A logger that drops everything: for unit tests of parts that require one. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
