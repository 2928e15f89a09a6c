// The one place `traktor ctl` writes to the terminal. Commands build text and hand it here,
// so they stay testable and nothing else in src/ touches stdout.
export interface Output {
  /** a result, for people or scripts (stdout) */
  out(text: string): void
  /** a diagnosis: why it failed, warnings (stderr) */
  err(text: string): void
  /** start a new --watch frame: clears a terminal, separates frames in a pipe or file */
  frame(): void
}

const CLEAR = '\x1b[H\x1b[2J'

export function stdio(): Output {
  let frames = 0
  return {
    out: (text) => {
      process.stdout.write(text.endsWith('\n') ? text : `${text}\n`)
    },
    err: (text) => {
      process.stderr.write(text.endsWith('\n') ? text : `${text}\n`)
    },
    frame: () => {
      if (process.stdout.isTTY) process.stdout.write(CLEAR)
      else if (frames > 0) process.stdout.write('\n')
      frames++
    },
  }
}
