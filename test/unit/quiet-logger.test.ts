import { describe, expect, it } from 'vitest'
import { libp2pLogger } from '../../src/mesh/quiet-logger.js'

describe("libp2p's component logger", () => {
  it('is silent unless DEBUG is set, and makes no new logger per scope', () => {
    const { logger } = libp2pLogger({})
    expect(logger).toBeDefined()
    const log = logger?.forComponent('libp2p:connection')
    expect(log?.enabled).toBe(false)
    expect(log?.newScope('outbound')).toBe(log)
    expect(() => log?.('a %s', 'message')).not.toThrow()
    expect(() => log?.error('an error')).not.toThrow()
  })

  it("with DEBUG set, libp2p's own loggers are kept", () => {
    expect(libp2pLogger({ DEBUG: 'libp2p:*' })).toEqual({})
  })
})
