// js-yamux (@libp2p/yamux 8) answers every data frame it receives with a window update, however
// small: the liveness probe's one byte, and its one-byte answer, each cost a second frame the
// other way — four writes, four wake-ups of the two processes per probe instead of two (counted
// at the socket: 122 bytes per peer and probe period, half of them window updates). The yamux
// specification and its reference implementation (hashicorp/yamux, sendWindowUpdate) send an
// update only once half of the window has been consumed, or when the update carries a flag (the
// SYN/ACK that opens a stream). Patched here to do the same: the sender still holds at least half
// of its window at any time, so a large transfer never waits for an update it would have had.
// Idempotent; a later yamux without this method is left alone.
import { StreamState, YamuxStream } from '@libp2p/yamux/stream'

/** the fields of YamuxStream the patch reads (private in its typings) */
interface Window {
  state: StreamState
  recvWindow: number
  recvWindowCapacity: number
}

const FIXED = Symbol.for('traktor.yamux-window-fix')

/** Applies the fix once per process; returns whether it patched now (false: done before). */
export function fixYamuxWindowUpdates(): boolean {
  const proto = YamuxStream.prototype as unknown as {
    sendWindowUpdate?: () => void
    [FIXED]?: true
  }
  const original = proto.sendWindowUpdate
  if (proto[FIXED] || typeof original !== 'function') return false
  proto.sendWindowUpdate = function (this: Window): void {
    const flagged = this.state === StreamState.Init || this.state === StreamState.SYNReceived
    const consumed = this.recvWindow - this.recvWindowCapacity
    if (!flagged && this.state !== StreamState.Paused && consumed < this.recvWindow / 2) return
    original.call(this)
  }
  proto[FIXED] = true
  return true
}
