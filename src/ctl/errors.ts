// Why `traktor ctl` stops, as an exit code a script can branch on. Every failure the CLI
// reports is a CtlError carrying its code; anything else is a bug and exits 1 with a stack.
import { TraktorError } from '../errors.js'

export const EXIT = {
  ok: 0,
  /** the arbiter answered and refused, or a change aborted */
  refused: 1,
  usage: 2,
  /** no answer: connection refused, DNS, TLS, timeout */
  unreachable: 3,
  /** API key missing or wrong */
  auth: 4,
} as const

export type ExitCode = (typeof EXIT)[keyof typeof EXIT]

export class CtlError extends TraktorError {
  readonly exitCode: ExitCode

  constructor(
    code: string,
    exitCode: ExitCode,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(code, message, options)
    this.name = 'CtlError'
    this.exitCode = exitCode
  }
}

export class UsageError extends CtlError {
  constructor(message: string) {
    super('ERR_CTL_USAGE', EXIT.usage, message)
    this.name = 'UsageError'
  }
}
