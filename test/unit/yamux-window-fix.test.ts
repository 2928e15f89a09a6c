// js-yamux answers every data frame with a window update; patched (src/mesh/yamux-window-fix.ts)
// it answers once half of the window is consumed, as the yamux specification's reference does.
// A real YamuxStream, its frames caught where the muxer would send them. The unpatched behaviour
// is shown in a child process (this process is patched by the fix under test).
import { execFileSync } from 'node:child_process'
import { defaultLogger } from '@libp2p/logger'
import { StreamState, YamuxStream } from '@libp2p/yamux/stream'
import { Uint8ArrayList } from 'uint8arraylist'
import { describe, expect, it } from 'vitest'
import { fixYamuxWindowUpdates } from '../../src/mesh/yamux-window-fix.js'

const WINDOW = 256 * 1024 // yamux's initial stream window
const DATA = 0 // FrameType.Data
const WINDOW_UPDATE = 1 // FrameType.WindowUpdate

/** window updates sent for ten one-byte data frames on an established stream, unpatched */
const SCENARIO = `
import { defaultLogger } from '@libp2p/logger'
import { StreamState, YamuxStream } from '@libp2p/yamux/stream'
import { Uint8ArrayList } from 'uint8arraylist'
const sent = []
const s = new YamuxStream({ id: '1', streamId: 1, direction: 'inbound', state: StreamState.Established,
  log: defaultLogger().forComponent('t'), sendFrame: (h) => { sent.push(h); return true }, getRTT: () => -1 })
for (let i = 0; i < 10; i++) s.handleData({ header: { type: ${DATA}, flag: 0, streamID: 1, length: 1 }, data: new Uint8ArrayList(new Uint8Array(1)) })
console.log(JSON.stringify(sent.filter((h) => h.type === ${WINDOW_UPDATE}).length))
`

function stream(sent: Array<{ type: number; flag: number; length: number }>, state: StreamState) {
  return new YamuxStream({
    id: '1',
    streamId: 1,
    direction: 'inbound',
    state,
    log: defaultLogger().forComponent('yamux-window-fix-test'),
    sendFrame: (h) => {
      sent.push(h)
      return true
    },
    getRTT: () => -1,
  })
}

function data(s: YamuxStream, bytes: number): void {
  const frame = {
    header: { type: DATA, flag: 0, streamID: 1, length: bytes },
    data: new Uint8ArrayList(new Uint8Array(bytes)),
  }
  ;(s as unknown as { handleData(f: typeof frame): void }).handleData(frame)
}

describe('yamux window updates', () => {
  it('as shipped, every one-byte frame is answered with a window update', () => {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', SCENARIO], {
      encoding: 'utf8',
    })
    expect(Number(out.trim())).toBe(10)
  })

  it('patched, small frames get none; an update comes once half the window is consumed', () => {
    fixYamuxWindowUpdates() // true the first time in a process (a mesh test may have run it)
    expect(fixYamuxWindowUpdates()).toBe(false)
    const sent: Array<{ type: number; flag: number; length: number }> = []
    const s = stream(sent, StreamState.Established)
    for (let i = 0; i < 10; i++) data(s, 1)
    expect(sent).toEqual([])
    data(s, WINDOW / 2 - 10) // now exactly half consumed
    expect(sent).toHaveLength(1)
    expect(sent[0]).toMatchObject({ type: WINDOW_UPDATE, flag: 0, length: WINDOW / 2 })
    // the sender never ran short: a full window is accepted after the update
    data(s, WINDOW / 2)
    data(s, WINDOW / 2 - 1)
    expect(sent).toHaveLength(2)
  })

  it('patched, a stream being accepted still answers at once (the ACK rides on the update)', () => {
    fixYamuxWindowUpdates()
    const sent: Array<{ type: number; flag: number; length: number }> = []
    const s = stream(sent, StreamState.SYNReceived)
    data(s, 1)
    expect(sent).toHaveLength(1)
    expect(sent[0]).toMatchObject({ type: WINDOW_UPDATE, flag: 2 }) // Flag.ACK
  })
})
