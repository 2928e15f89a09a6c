import { describe, expect, it } from 'vitest'
import {
  CHANGE_TIMEOUT_MS,
  DEFAULT_URL,
  normaliseUrl,
  parseArgs,
  READ_TIMEOUT_MS,
} from '../../src/ctl/args.js'
import { UsageError } from '../../src/ctl/errors.js'

const run = (argv: string[], env = {}) => {
  const p = parseArgs(argv, env)
  if (p.kind !== 'run') throw new Error('expected a command')
  return p
}

const usage = (argv: string[], env = {}): string => {
  try {
    parseArgs(argv, env)
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError)
    expect((err as UsageError).exitCode).toBe(2)
    return (err as Error).message
  }
  throw new Error(`no usage error for ${argv.join(' ')}`)
}

describe('ctl arguments', () => {
  it('parses every command', () => {
    expect(run(['status']).command).toEqual({ name: 'status' })
    expect(run(['nodes']).command).toEqual({ name: 'nodes' })
    expect(run(['history']).command).toEqual({ name: 'history' })
    expect(run(['replicaset', 'list']).command).toEqual({ name: 'replicaset list' })
    expect(run(['replicaset', 'add', 'demo.t']).command).toEqual({
      name: 'replicaset add',
      relation: 'demo.t',
    })
    expect(run(['replicaset', 'remove', '"My Schema".T']).command).toEqual({
      name: 'replicaset remove',
      relation: '"My Schema".T',
    })
    expect(run(['remove-node', '12']).command).toEqual({ name: 'remove-node', node: 12 })
  })

  it('takes defaults from the environment, options win, an empty key is no key', () => {
    expect(run(['status']).options).toEqual({
      url: DEFAULT_URL,
      json: false,
      timeoutMs: READ_TIMEOUT_MS,
    })
    const env = { TRAKTOR_URL: 'http://10.0.0.5:9000/', TRAKTOR_API_KEY: 'k1' }
    expect(run(['status'], env).options).toMatchObject({
      url: 'http://10.0.0.5:9000',
      apiKey: 'k1',
    })
    expect(run(['--url', 'h:1', '--api-key=k2', 'status'], env).options).toMatchObject({
      url: 'http://h:1',
      apiKey: 'k2',
    })
    expect(run(['status'], { TRAKTOR_API_KEY: '' }).options.apiKey).toBeUndefined()
    expect(run(['--api-key', '', 'status'], env).options.apiKey).toBeUndefined()
  })

  it('accepts options anywhere, in both spellings', () => {
    const a = run(['replicaset', '--json', 'add', '--timeout=500', 'demo.t'])
    expect(a.command).toEqual({ name: 'replicaset add', relation: 'demo.t' })
    expect(a.options).toMatchObject({ json: true, timeoutMs: 500 })
    expect(run(['nodes', '--url', 'https://a.example/traktor/']).options.url).toBe(
      'https://a.example/traktor',
    )
    // after --, everything is positional
    expect(run(['--', 'remove-node', '3']).command).toEqual({ name: 'remove-node', node: 3 })
  })

  it('gives changes a longer default timeout than reads', () => {
    expect(run(['replicaset', 'add', 'a.b']).options.timeoutMs).toBe(CHANGE_TIMEOUT_MS)
    expect(run(['remove-node', '1']).options.timeoutMs).toBe(CHANGE_TIMEOUT_MS)
    expect(run(['replicaset', 'list']).options.timeoutMs).toBe(READ_TIMEOUT_MS)
    expect(run(['--timeout', '7', 'replicaset', 'add', 'a.b']).options.timeoutMs).toBe(7)
  })

  it('reads --watch with and without SECONDS', () => {
    expect(run(['status', '--watch']).options.watchSeconds).toBe(2)
    expect(run(['--watch', 'nodes']).options.watchSeconds).toBe(2)
    expect(run(['--watch', '5', 'nodes']).options.watchSeconds).toBe(5)
    expect(run(['history', '--watch=0.5']).options.watchSeconds).toBe(0.5)
    expect(run(['status', '--watch', '1', '--json']).options).toMatchObject({
      watchSeconds: 1,
      json: true,
    })
  })

  it('asks for help', () => {
    for (const argv of [['--help'], ['-h'], ['help'], ['status', '--help'], ['bogus', '-h']]) {
      expect(parseArgs(argv, {})).toEqual({ kind: 'help' })
    }
  })

  it('refuses what it cannot use, saying what is wrong', () => {
    expect(usage([])).toMatch(/COMMAND is required/)
    expect(usage(['frob'])).toMatch(/unknown command "frob"/)
    expect(usage(['status', 'now'])).toMatch(/status takes no arguments/)
    expect(usage(['replicaset'])).toMatch(/list, add or remove/)
    expect(usage(['replicaset', 'drop', 'a.b'])).toMatch(/unknown replicaset command "drop"/)
    expect(usage(['replicaset', 'add'])).toMatch(/needs SCHEMA\.TABLE/)
    expect(usage(['replicaset', 'add', 'a.b', 'c.d'])).toMatch(/takes one SCHEMA\.TABLE/)
    expect(usage(['replicaset', 'list', 'a.b'])).toMatch(/takes no arguments/)
    expect(usage(['replicaset', 'add', 'nodot'])).toMatch(/expected exactly schema\.table/)
    expect(usage(['replicaset', 'add', 'a.b;drop'])).toMatch(/unexpected ";"/)
    expect(usage(['remove-node'])).toMatch(/needs a node ID/)
    expect(usage(['remove-node', '-1'])).toMatch(/integer >= 0, not "-1"/)
    expect(usage(['remove-node', '1.5'])).toMatch(/integer >= 0/)
    expect(usage(['remove-node', '99999999999'])).toMatch(/integer >= 0/)
    expect(usage(['remove-node', '1', '2'])).toMatch(/takes one node ID/)
    expect(usage(['--verbose', 'status'])).toMatch(/unknown option --verbose/)
    expect(usage(['status', '--url'])).toMatch(/--url needs a value/)
    expect(usage(['--json=yes', 'status'])).toMatch(/--json takes no value/)
    expect(usage(['--timeout', '0', 'status'])).toMatch(/--timeout/)
    expect(usage(['--timeout', '1.5', 'status'])).toMatch(/--timeout/)
    expect(usage(['--watch=0', 'status'])).toMatch(/--watch: seconds/)
    expect(usage(['--watch=x', 'status'])).toMatch(/--watch: seconds/)
    expect(usage(['--watch', 'replicaset', 'list'])).toMatch(/not replicaset list/)
    expect(usage(['--watch', 'remove-node', '1'])).toMatch(/not remove-node/)
    expect(usage(['status'], { TRAKTOR_URL: 'ftp://x' })).toMatch(/^TRAKTOR_URL: only http/)
  })
})

describe('ctl URL', () => {
  it('normalises what a person types and refuses what fetch cannot use', () => {
    expect(normaliseUrl('127.0.0.1:8080')).toBe('http://127.0.0.1:8080')
    expect(normaliseUrl('localhost:8080')).toBe('http://localhost:8080')
    expect(normaliseUrl('HTTPS://Example.COM:8443//')).toBe('https://example.com:8443')
    expect(normaliseUrl('http://[::1]:8080')).toBe('http://[::1]:8080')
    expect(() => normaliseUrl('http://u:p@h:1')).toThrow(/no credentials/)
    expect(() => normaliseUrl('http://h:1/?a=1')).toThrow(/no query/)
    expect(() => normaliseUrl('ftp://h')).toThrow(/only http/)
    expect(() => normaliseUrl('http://')).toThrow(/not a URL/)
  })
})
