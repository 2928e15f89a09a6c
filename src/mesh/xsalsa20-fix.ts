// A fix for xsalsa20 1.2.0, the cipher of libp2p's private network (@libp2p/pnet): every
// connection holds two instances over one WebAssembly memory, and each instance keeps its own
// view of it. When one instance grows the memory (a chunk larger than ~600 KB read at once: an
// RPC frame of up to 1 MiB), every other view is detached (length 0), and the library takes
// length 0 as "too small" and grows the memory again by a page on each instance's next update
// — which detaches the others once more. About a thousand small packets later the memory hits
// its 64 MiB maximum and the arbiter dies of an uncaught RangeError (measured: 984 updates
// after one 1 MiB chunk; seen in the 64-node mesh benchmark). Patched here: a detached view is
// refreshed (grow by 0 pages) before an update. Idempotent; a later xsalsa20 that has no such
// view is left alone.
import { createRequire } from 'node:module'

interface WasmXor {
  _memory: Uint8Array
  realloc(size: number): void
  update(input: Uint8Array, output: Uint8Array): void
}
type XSalsa20 = (nonce: Uint8Array, key: Uint8Array) => { _xor: unknown; finalize(): void }

const FIXED = Symbol.for('traktor.xsalsa20-fix')

/** Applies the fix once per process; returns whether it patched now (false: done before). */
export function fixXsalsa20(): boolean {
  const xsalsa20 = createRequire(import.meta.url)('xsalsa20') as XSalsa20
  const probe = xsalsa20(new Uint8Array(24), new Uint8Array(32))
  const proto = Object.getPrototypeOf(probe._xor) as Partial<WasmXor> & { [FIXED]?: true }
  probe.finalize()
  if (proto[FIXED] || typeof proto.realloc !== 'function' || typeof proto.update !== 'function')
    return false
  const update = proto.update
  proto.update = function (this: WasmXor, input: Uint8Array, output: Uint8Array): void {
    if (this._memory.length === 0) this.realloc(0) // detached by another instance's growth
    update.call(this, input, output)
  }
  proto[FIXED] = true
  return true
}
