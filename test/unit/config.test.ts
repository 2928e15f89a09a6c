import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { loadConfig } from '../../src/config/load.js'
import { strategyFor } from '../../src/config/types.js'
import { ConfigError } from '../../src/errors.js'

let dir: string

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'traktor-config-'))
})

afterEach(() => {
  rmSync(dir, { recursive: true, force: true })
})

function write(name: string, content: string | object): string {
  const path = join(dir, name)
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content, null, 2))
  return path
}

/** Loads with an empty environment unless one is given, so the test runner's env is ignored. */
const loaded = (path: string, env: Record<string, string | undefined> = {}) => loadConfig(path, env)
const load = (path: string, env: Record<string, string | undefined> = {}) =>
  loaded(path, env).config

function problemsOf(path: string, env: Record<string, string | undefined> = {}): string[] {
  try {
    load(path, env)
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError)
    const err = e as ConfigError
    expect(err.code).toBe('ERR_CONFIG')
    expect(err.message).toContain(path)
    return [...err.problems]
  }
  throw new Error(`${path} loaded without problems`)
}

const PG = 'host=127.0.0.1 port=5433 dbname=app user=traktor_arbiter password=secret'
const PG_NO_PW = 'host=127.0.0.1 port=5433 dbname=app user=traktor_arbiter'
const KEY = 'test-key'
const minimal = { nodeId: 0, postgres: PG, api: { apiKey: KEY } }

function tutorialConf(node: number): string {
  return [
    '[DEFAULT]',
    `NodeID = ${node}`,
    `ConnectionString = host=127.0.0.1 port=${5433 + node} user=traktor_arbiter password=traktor dbname=traktor_tutorial`,
    `APIAddress = 127.0.0.1:${8080 + node}`,
    'CheckInterval = 10',
    'APIKey =  LetMeIn',
    'LSNResolver = file_fdw',
    '',
  ].join('\n')
}

describe('TRAKTOR arbiter.conf', () => {
  it.each([0, 1, 2])('loads the tutorial file of node %i', (node) => {
    const path = write('arbiter.conf', tutorialConf(node))
    const user = 'user=traktor_arbiter'
    expect(load(path)).toEqual({
      nodeId: node,
      postgres: `host=127.0.0.1 port=${5433 + node} ${user} password=traktor dbname=traktor_tutorial`,
      advertisePostgres: `host=127.0.0.1 port=${5433 + node} ${user} dbname=traktor_tutorial`,
      api: { host: '127.0.0.1', port: 8080 + node, apiKey: 'LetMeIn', publicEndpoints: true },
      checkIntervalMs: 10_000,
      checkEveryMs: 600_000,
      healLostSlots: true,
      recordMissingRows: false,
      resolver: 'skip',
      resolvers: {},
      sequences: 'off',
      commit: 'async',
      join: 'empty-only',
      logLevel: 'info',
      source: path,
      format: 'ini',
    })
  })

  it('maps CheckInterval seconds, decimals included', () => {
    const path = write(
      'a.ini',
      tutorialConf(0).replace('CheckInterval = 10', 'CheckInterval = 0.25'),
    )
    expect(load(path).checkIntervalMs).toBe(250)
  })

  it.each([
    ['log_fdw', 'skip'],
    ['', 'off'],
  ])('maps LSNResolver %j to %j', (value, resolver) => {
    const path = write('arbiter.conf', tutorialConf(0).replace('= file_fdw', `= ${value}`))
    expect(load(path).resolver).toBe(resolver)
  })

  it('reads a missing LSNResolver as off, and defaults what TRAKTOR may leave out', () => {
    const text = '[DEFAULT]\nNodeID = 3\nConnectionString = host=h\nAPIKey = test-key\n'
    const c = load(write('arbiter.conf', text))
    expect(c.resolver).toBe('off')
    expect(c.checkIntervalMs).toBe(1000)
    expect([c.api.host, c.api.port]).toEqual(['127.0.0.1', 8080])
  })

  it('maps SSLKeyfile and SSLCertfile to api.tls, relative to the file', () => {
    write('api.crt', 'cert')
    write('api.key', 'key')
    const path = write(
      'arbiter.conf',
      `${tutorialConf(0)}SSLKeyfile = api.key\nSSLCertfile = api.crt\n`,
    )
    expect(load(path).api.tls).toEqual({
      certFile: join(dir, 'api.crt'),
      keyFile: join(dir, 'api.key'),
    })
  })

  it('reports TLS files that cannot be read, under the INI key names', () => {
    const path = write(
      'arbiter.conf',
      `${tutorialConf(0)}SSLKeyfile = k.pem\nSSLCertfile = c.pem\n`,
    )
    expect(problemsOf(path)).toEqual([
      `SSLCertfile: cannot read "${join(dir, 'c.pem')}" (no such file)`,
      `SSLKeyfile: cannot read "${join(dir, 'k.pem')}" (no such file)`,
    ])
  })

  it('takes a password with " #" whole', () => {
    const text = tutorialConf(0).replace('password=traktor', "password='a #b'")
    expect(load(write('arbiter.conf', text)).postgres).toContain("password='a #b'")
  })

  it('reports every problem at once, naming the INI keys', () => {
    const text = [
      '[DEFAULT]',
      'NodeID = abc',
      'ConnectionString = host=h hots=x',
      'APIAddress = localhost',
      'CheckInterval = soon',
      'APIKey =  # The secret API Key',
      'LSNResolver = magic',
      'SSLKeyfile = api.key',
      'Colour = blue',
      'broken line',
      '[extra]',
    ].join('\n')
    expect(problemsOf(write('arbiter.conf', text))).toEqual([
      'line 10: expected "key = value"',
      '[extra]: unknown section (arbiter.conf uses [DEFAULT])',
      'colour: unknown key (arbiter.conf keys: NodeID, ConnectionString, APIAddress, ' +
        'CheckInterval, APIKey, LSNResolver, SSLKeyfile, SSLCertfile)',
      'APIKey: the value starts with "#" or ";" and looks like a comment (inline comments are ' +
        'not stripped from this key); set the real value',
      'CheckInterval: must be seconds from 0.05 to 3600, got "soon"',
      'LSNResolver: must be file_fdw, log_fdw or empty, got "magic"',
      'SSLCertfile: missing (SSLKeyfile is set; TLS needs both)',
      'NodeID: must be an integer >= 0, got "abc"',
      'ConnectionString: unknown keyword "hots" at character 8',
      'APIAddress: must be "host:port" with a port up to 65535 (IPv6 as "[::1]:8080"), ' +
        'got "localhost"',
    ])
  })

  it('reports a missing SSLKeyfile and required keys', () => {
    const problems = problemsOf(write('x.conf', '[DEFAULT]\nSSLCertfile = c.pem\n'))
    expect(problems).toEqual([
      'SSLKeyfile: missing (SSLCertfile is set; TLS needs both)',
      'NodeID: required',
      'ConnectionString: required',
      'APIKey: required',
    ])
  })

  it('needs a [DEFAULT] section', () => {
    expect(problemsOf(write('x.conf', ''))).toContain('[DEFAULT]: section missing')
  })

  it('lets the environment supply the secrets', () => {
    const text = '[DEFAULT]\nNodeID = 1\nConnectionString = host=h\nAPIKey = # set me\n'
    const c = load(write('arbiter.conf', text), {
      TRAKTOR_API_KEY: 'from-env',
      TRAKTOR_POSTGRES: 'postgresql://u:pw@db/app',
    })
    expect(c.api.apiKey).toBe('from-env')
    expect(c.postgres).toBe('user=u password=pw host=db dbname=app')
  })
})

describe('native JSON', () => {
  it('loads the example of DESIGN §3', () => {
    write('api.crt', 'cert')
    write('api.key', 'key')
    write('swarm.key', 'psk')
    write('bootstrap.json', { peers: ['/ip4/10.0.0.6/tcp/9000'] })
    const path = write('traktor.json', {
      nodeId: 0,
      postgres: PG,
      advertise: { postgres: 'host=10.0.0.5 port=5433 dbname=app user=traktor_arbiter' },
      api: {
        listen: '127.0.0.1:8080',
        apiKey: 'secret',
        tls: { certFile: 'api.crt', keyFile: 'api.key' },
      },
      peerPassword: 'secret',
      checkIntervalMs: 1000,
      resolver: 'skip',
      join: 'empty-only',
      mesh: {
        listen: ['/ip4/127.0.0.1/tcp/9000'],
        bootstrap: 'bootstrap.json',
        identityFile: 'peer.key',
        pskFile: 'swarm.key',
      },
      logLevel: 'info',
    })
    expect(load(path)).toEqual({
      nodeId: 0,
      postgres: PG,
      advertisePostgres: 'host=10.0.0.5 port=5433 dbname=app user=traktor_arbiter',
      peerPassword: 'secret',
      api: {
        host: '127.0.0.1',
        port: 8080,
        apiKey: 'secret',
        publicEndpoints: true,
        tls: { certFile: join(dir, 'api.crt'), keyFile: join(dir, 'api.key') },
      },
      checkIntervalMs: 1000,
      checkEveryMs: 600_000,
      healLostSlots: true,
      recordMissingRows: false,
      resolver: 'skip',
      resolvers: {},
      sequences: 'stripe',
      commit: 'async',
      join: 'empty-only',
      mesh: {
        listen: ['/ip4/127.0.0.1/tcp/9000'],
        bootstrap: ['/ip4/10.0.0.6/tcp/9000'],
        identityFile: join(dir, 'peer.key'),
        pskFile: join(dir, 'swarm.key'),
        insecure: false,
        cluster: 'traktor',
        heartbeatMs: 500,
        suspectAfterMs: 1000,
        deadAfterMs: 2000,
      },
      logLevel: 'info',
      source: path,
      format: 'json',
    })
  })

  it('fills in defaults', () => {
    const c = load(write('c.json', minimal))
    expect(c).toEqual({
      nodeId: 0,
      postgres: PG,
      advertisePostgres: PG_NO_PW,
      api: { host: '127.0.0.1', port: 8080, apiKey: KEY, publicEndpoints: true },
      checkIntervalMs: 1000,
      checkEveryMs: 600_000,
      healLostSlots: true,
      recordMissingRows: false,
      resolver: 'skip',
      resolvers: {},
      sequences: 'off',
      commit: 'async',
      join: 'empty-only',
      logLevel: 'info',
      source: join(dir, 'c.json'),
      format: 'json',
    })
    expect('mesh' in c).toBe(false)
  })

  it('fills in mesh defaults, insecure without a pskFile', () => {
    const c = load(
      write('c.json', { ...minimal, mesh: { listen: ['/ip4/0.0.0.0/tcp/0'], insecure: true } }),
    )
    expect(c.mesh).toEqual({
      listen: ['/ip4/0.0.0.0/tcp/0'],
      bootstrap: [],
      identityFile: join(dir, 'peer.key'),
      insecure: true,
      cluster: 'traktor',
      heartbeatMs: 500,
      suspectAfterMs: 1000,
      deadAfterMs: 2000,
    })
  })

  it('takes mesh.fullMeshUpTo (a sparse mesh past it)', () => {
    const c = load(
      write('c.json', {
        ...minimal,
        mesh: { listen: ['/ip4/0.0.0.0/tcp/0'], insecure: true, fullMeshUpTo: 16 },
      }),
    )
    expect(c.mesh?.fullMeshUpTo).toBe(16)
  })

  it('converts a URI to key/value form and derives advertise without the password', () => {
    const c = load(write('c.json', { ...minimal, postgres: 'postgres://arb:p%20w@[::1]:5433/app' }))
    expect(c.postgres).toBe("user=arb password='p w' host=::1 port=5433 dbname=app")
    expect(c.advertisePostgres).toBe('user=arb host=::1 port=5433 dbname=app')
  })

  it('reads IPv6 listen addresses and publicEndpoints', () => {
    const c = load(
      write('c.json', {
        ...minimal,
        api: { apiKey: KEY, listen: '[::1]:9090', publicEndpoints: false },
      }),
    )
    expect([c.api.host, c.api.port, c.api.publicEndpoints]).toEqual(['::1', 9090, false])
  })

  it('reads bootstrap peers from a list, or from a file relative to the config', () => {
    const peers = ['/ip4/10.0.0.5/tcp/9000', '/dns4/b.example/tcp/9000/p2p/12D3KooWabc']
    write('swarm.key', 'psk')
    const mesh = { listen: ['/ip4/127.0.0.1/tcp/9000'], pskFile: 'swarm.key' }
    expect(
      load(write('a.json', { ...minimal, mesh: { ...mesh, bootstrap: peers } })).mesh?.bootstrap,
    ).toEqual(peers)
    write('boot.json', { peers })
    expect(
      load(write('b.json', { ...minimal, mesh: { ...mesh, bootstrap: 'boot.json' } })).mesh
        ?.bootstrap,
    ).toEqual(peers)
  })

  it('accepts bootstrap.json.example from the repository root', () => {
    const example = fileURLToPath(new URL('../../bootstrap.json.example', import.meta.url))
    const mesh = { listen: ['/ip4/127.0.0.1/tcp/9000'], bootstrap: example, insecure: true }
    expect(load(write('c.json', { ...minimal, mesh })).mesh?.bootstrap).toHaveLength(3)
  })

  it('reports a missing or invalid bootstrap file', () => {
    write('swarm.key', 'psk')
    const mesh = { listen: ['/ip4/127.0.0.1/tcp/9000'], pskFile: 'swarm.key' }
    const missing = problemsOf(
      write('a.json', { ...minimal, mesh: { ...mesh, bootstrap: 'nope.json' } }),
    )
    expect(missing).toEqual([
      `mesh.bootstrap: "${join(dir, 'nope.json')}" cannot be read (no such file); ` +
        'expected {"peers": ["/ip4/.../tcp/..."]}',
    ])
    write('bad.json', { peers: ['ip4/1.2.3.4'], extra: 1 })
    const bad = problemsOf(
      write('b.json', { ...minimal, mesh: { ...mesh, bootstrap: 'bad.json' } }),
    )
    expect(bad).toEqual([
      `mesh.bootstrap: "${join(dir, 'bad.json')}": peers[0]: must be a multiaddr starting with "/", got "ip4/1.2.3.4"`,
      `mesh.bootstrap: "${join(dir, 'bad.json')}": unknown key extra`,
    ])
    write('broken.json', '{"peers": [')
    expect(
      problemsOf(write('c.json', { ...minimal, mesh: { ...mesh, bootstrap: 'broken.json' } }))[0],
    ).toContain('is not valid JSON')
  })

  it('needs a readable pskFile in mesh mode', () => {
    const mesh = { listen: ['/ip4/127.0.0.1/tcp/9000'], pskFile: 'swarm.key' }
    expect(problemsOf(write('c.json', { ...minimal, mesh }))).toEqual([
      `mesh.pskFile: cannot read "${join(dir, 'swarm.key')}" (no such file)`,
    ])
  })

  it('reads any .json extension as JSON and anything else as INI', () => {
    expect(load(write('UPPER.JSON', minimal)).format).toBe('json')
    expect(load(write('node.ini', tutorialConf(1))).format).toBe('ini')
  })

  it('rejects unknown keys, naming the path and a likely intent', () => {
    const path = write('c.json', { ...minimal, api: { apiKy: 'k' }, insecure: true, colour: 'red' })
    expect(problemsOf(path)).toEqual([
      'api.apiKey: required',
      'api.apiKy: unknown key (did you mean "apiKey"?)',
      'insecure: unknown key (did you mean "mesh.insecure"?)',
      'colour: unknown key',
    ])
  })

  it('takes per-table resolver overrides, keyed as PostgreSQL names the table', () => {
    const path = write('c.json', {
      ...minimal,
      resolvers: { 'demo.Legacy': 'skip', '"My Schema"."T.x"': 'off', 'demo.kv': 'lww' },
    })
    const c = load(path)
    expect(c.resolver).toBe('skip')
    expect(c.resolvers).toEqual({ 'demo.legacy': 'skip', 'My Schema.T.x': 'off', 'demo.kv': 'lww' })
    expect(strategyFor(c, 'demo.legacy')).toBe('skip')
    expect(strategyFor(c, 'demo.other')).toBe('skip')
    expect(strategyFor(c, 'demo.kv')).toBe('lww')
    expect(strategyFor(c, undefined)).toBe('skip')
    expect(load(write('d.json', minimal)).resolvers).toEqual({})
  })

  it('refuses a bad table name or strategy in resolvers, naming each', () => {
    const path = write('c.json', {
      ...minimal,
      resolvers: { no_schema: 'skip', 'demo.t': 'newest', 'a.b.c': 'lww' },
    })
    expect(problemsOf(path)).toEqual([
      'resolvers.demo.t: must be one of "lww", "skip", "off", got "newest"',
      'resolvers.no_schema: malformed table name "no_schema": expected exactly schema.table',
      'resolvers.a.b.c: malformed table name "a.b.c": expected exactly schema.table',
    ])
    expect(problemsOf(write('e.json', { ...minimal, resolvers: ['demo.t'] }))).toEqual([
      'resolvers: must be an object, got a list',
    ])
  })

  it('reports several problems at once, one line each, naming the key', () => {
    const path = write('c.json', {
      nodeId: -1,
      postgres: "host=h password='unterminated",
      advertise: { postgres: 'host=10.0.0.5 password=x' },
      api: { listen: '127.0.0.1', apiKey: '', tls: { certFile: 'none.crt' } },
      peerPassword: 42,
      checkIntervalMs: 10,
      resolver: 'fix',
      logLevel: 'loud',
      mesh: {
        listen: [],
        bootstrap: ['ok/no-slash'],
        cluster: 'Bad_Name',
        heartbeatMs: 1500,
        deadAfterMs: 900,
        fullMeshUpTo: 1,
      },
    })
    expect(problemsOf(path)).toEqual([
      'nodeId: must be an integer >= 0, got -1',
      'postgres: unterminated quoted value for "password" (quote opened at character 17)',
      'advertise.postgres: must not contain a password (passwords are never gossiped)',
      'api.listen: must be "host:port" with a port up to 65535 (IPv6 as "[::1]:8080"), got "127.0.0.1"',
      'api.apiKey: must not be empty',
      `api.tls.certFile: cannot read "${join(dir, 'none.crt')}" (no such file)`,
      'api.tls.keyFile: required',
      'peerPassword: must be a string',
      'checkIntervalMs: must be an integer from 50 to 3600000, got 10',
      'resolver: must be one of "lww", "skip", "off", got "fix"',
      'mesh.listen: must list at least one address',
      'mesh.bootstrap[0]: must be a multiaddr starting with "/", got "ok/no-slash"',
      'mesh.cluster: must be 1-63 of a-z, 0-9 and "-", not starting with "-", got "Bad_Name"',
      'mesh.fullMeshUpTo: must be an integer from 2 to 100000, got 1',
      'mesh.pskFile: required in mesh mode (create one with "traktor keygen FILE"), ' +
        'unless "mesh.insecure" is true',
      'mesh.heartbeatMs: must be less than mesh.suspectAfterMs (1500 >= 1000)',
      'mesh.suspectAfterMs: must be less than mesh.deadAfterMs (1000 >= 900)',
      'logLevel: must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent", ' +
        'got "loud"',
    ])
  })

  it('checks types and ranges', () => {
    const cases: Array<[object, string]> = [
      [{ nodeId: 'abc' }, 'nodeId: must be an integer >= 0, got "abc"'],
      [{ nodeId: 1.5 }, 'nodeId: must be an integer >= 0, got 1.5'],
      [{ nodeId: 2 ** 31 }, 'nodeId: must be an integer >= 0, got 2147483648'],
      [{ api: 'x' }, 'api: must be an object, got "x"'],
      [{ api: { apiKey: KEY, listen: 'h:70000' } }, 'api.listen: must be "host:port" with a port'],
      [
        { api: { apiKey: KEY, publicEndpoints: 'yes' } },
        'api.publicEndpoints: must be true or false',
      ],
      [
        { mesh: { listen: '/ip4/1.2.3.4/tcp/1', insecure: true } },
        'mesh.listen: must be a list of multiaddrs',
      ],
      [{ mesh: { listen: ['/x'], insecure: 'yes' } }, 'mesh.insecure: must be true or false'],
      [{ mesh: 'on' }, 'mesh: must be an object'],
      [{ recordMissingRows: 1 }, 'recordMissingRows: must be true or false, got 1'],
      [{ checkEveryMs: -1 }, 'checkEveryMs: must be an integer from 0 to 604800000, got -1'],
      [{ checkEveryMs: '10m' }, 'checkEveryMs: must be an integer from 0 to 604800000, got "10m"'],
      [{ healLostSlots: 'yes' }, 'healLostSlots: must be true or false, got "yes"'],
    ]
    for (const [patch, problem] of cases) {
      const problems = problemsOf(write('c.json', { ...minimal, ...patch }))
      expect(problems, JSON.stringify(problems)).toHaveLength(1)
      expect(problems[0]).toContain(problem)
    }
  })

  it('takes checkEveryMs 0 as "no background check"', () => {
    expect(load(write('c.json', { ...minimal, checkEveryMs: 0 })).checkEveryMs).toBe(0)
  })

  it('never shows a secret in a message', () => {
    const path = write('c.json', {
      nodeId: 0,
      postgres: 'host=h password=hunter2 extra words',
      api: { apiKey: 12345 },
      peerPassword: ['sw0rdfish'],
    })
    const text = problemsOf(path).join('\n')
    expect(text).toContain('postgres:')
    expect(text).toContain('api.apiKey: must be a string')
    expect(text).not.toMatch(/hunter2|extra|words|12345|sw0rdfish/)
  })

  it('applies environment overrides, ignoring empty values', () => {
    const path = write('c.json', { nodeId: 1, postgres: 'host=file', api: {} })
    const c = load(path, {
      TRAKTOR_API_KEY: 'env-key',
      TRAKTOR_POSTGRES: 'host=env password=pw',
      TRAKTOR_PEER_PASSWORD: 'peer-pw',
    })
    expect(c.api.apiKey).toBe('env-key')
    expect(c.postgres).toBe('host=env password=pw')
    expect(c.advertisePostgres).toBe('host=env')
    expect(c.peerPassword).toBe('peer-pw')
    const fromFile = load(write('d.json', minimal), { TRAKTOR_API_KEY: '', TRAKTOR_POSTGRES: '' })
    expect([fromFile.api.apiKey, fromFile.postgres]).toEqual([KEY, PG])
    // the api section may be left out when the key comes from the environment
    expect(
      load(write('e.json', { nodeId: 0, postgres: PG }), { TRAKTOR_API_KEY: KEY }).api.apiKey,
    ).toBe(KEY)
  })

  it('names the environment variable when its value is wrong', () => {
    const path = write('c.json', minimal)
    expect(problemsOf(path, { TRAKTOR_POSTGRES: 'hots=h' })).toEqual([
      'TRAKTOR_POSTGRES: unknown keyword "hots" at character 1',
    ])
  })

  it('reports a missing file, a directory, invalid JSON and a non-object', () => {
    expect(problemsOf(join(dir, 'nope.json'))).toEqual([
      `config file: cannot read "${join(dir, 'nope.json')}" (no such file)`,
    ])
    expect(problemsOf(dir)[0]).toContain('(is a directory)')
    const bad = write('bad.json', '{\n  "nodeId": 0,\n  "api": { "apiKey": sekrit }\n}')
    expect(problemsOf(bad)).toEqual([
      'config file: invalid JSON at line 3, column 22: unexpected character',
    ])
    expect(problemsOf(write('cut.json', '{"a": 1'))).toEqual([
      'config file: invalid JSON at line 1, column 8: expected "," or "}"',
    ])
    expect(problemsOf(write('empty.json', ''))).toEqual([
      'config file: invalid JSON at line 1, column 1: unexpected end of input',
    ])
    expect(problemsOf(write('list.json', '[]'))).toEqual([
      'config file: must hold a JSON object, got a list',
    ])
  })

  it('returns a deeply frozen config', () => {
    write('swarm.key', 'psk')
    const c = load(
      write('c.json', {
        ...minimal,
        mesh: { listen: ['/ip4/127.0.0.1/tcp/1'], pskFile: 'swarm.key' },
      }),
    )
    expect(Object.isFrozen(c)).toBe(true)
    expect(Object.isFrozen(c.api)).toBe(true)
    const listen = (c.mesh?.listen ?? []) as string[]
    expect(Object.isFrozen(c.mesh)).toBe(true)
    expect(Object.isFrozen(listen)).toBe(true)
    expect(() => {
      ;(c as { nodeId: number }).nodeId = 9
    }).toThrow(TypeError)
    expect(() => listen.push('/x')).toThrow(TypeError)
  })
})

describe('weak API keys (issue 8)', () => {
  const WHY = {
    empty: 'must not be empty',
    blank: 'must not be only whitespace',
    padded: 'must not begin or end with whitespace',
    short: 'must be at least 6 characters (16 or more random ones recommended)',
  }

  it.each([
    ['', WHY.empty],
    [' ', WHY.blank],
    ['\t \n', WHY.blank],
    [' test-key', WHY.padded],
    ['test-key\n', WHY.padded],
    ['x', WHY.short],
    ['abcde', WHY.short],
  ])('refuses api.apiKey %j, without showing it', (key, why) => {
    const problems = problemsOf(write('c.json', { ...minimal, api: { apiKey: key } }))
    expect(problems).toEqual([`api.apiKey: ${why}`])
  })

  it('names APIKey in arbiter.conf and TRAKTOR_API_KEY in the environment', () => {
    const ini = tutorialConf(0).replace('APIKey =  LetMeIn', 'APIKey = abc')
    expect(problemsOf(write('arbiter.conf', ini))).toEqual([`APIKey: ${WHY.short}`])
    const path = write('c.json', minimal)
    expect(problemsOf(path, { TRAKTOR_API_KEY: ' ' })).toEqual([`TRAKTOR_API_KEY: ${WHY.blank}`])
    expect(problemsOf(path, { TRAKTOR_API_KEY: 'key ' })).toEqual([
      `TRAKTOR_API_KEY: ${WHY.padded}`,
    ])
    expect(problemsOf(path, { TRAKTOR_API_KEY: 'five5' })).toEqual([
      `TRAKTOR_API_KEY: ${WHY.short}`,
    ])
  })

  it('accepts a key shorter than 16 characters with one warning that never shows it', () => {
    const tutorial = loaded(write('arbiter.conf', tutorialConf(0)))
    expect(tutorial.config.api.apiKey).toBe('LetMeIn')
    expect(tutorial.warnings).toEqual([
      {
        key: 'APIKey',
        message:
          'APIKey: shorter than 16 characters; use a longer random key ' +
          '(e.g. the output of "openssl rand -hex 24")',
        fields: { recommendedLength: 16 },
      },
    ])
    expect(JSON.stringify(tutorial.warnings)).not.toContain('LetMeIn')
    const six = loaded(write('c.json', { ...minimal, api: { apiKey: 'sixsix' } }))
    expect(six.warnings.map((w) => w.key)).toEqual(['api.apiKey'])
    const env = loaded(write('d.json', minimal), { TRAKTOR_API_KEY: 'from-env' })
    expect(env.warnings.map((w) => w.key)).toEqual(['TRAKTOR_API_KEY'])
  })

  it('says nothing about a key of 16 characters or more', () => {
    const c = loaded(write('c.json', { ...minimal, api: { apiKey: '0123456789abcdef' } }))
    expect(c.warnings).toEqual([])
  })
})

describe('key files readable by other users (issue 8)', () => {
  const LONG_KEY = '0123456789abcdef0123'

  function keyFile(name: string, mode: number): string {
    const file = write(name, 'secret material')
    chmodSync(file, mode)
    return file
  }

  it('warns about each key file group or others can read, with its mode and the chmod', () => {
    const tls = keyFile('api.key', 0o644)
    const identity = keyFile('peer.key', 0o640)
    const psk = keyFile('swarm.key', 0o604)
    write('api.crt', 'cert')
    const c = loaded(
      write('c.json', {
        ...minimal,
        api: { apiKey: LONG_KEY, tls: { certFile: 'api.crt', keyFile: 'api.key' } },
        mesh: { listen: ['/ip4/127.0.0.1/tcp/1'], identityFile: 'peer.key', pskFile: 'swarm.key' },
      }),
    )
    expect(c.warnings).toEqual([
      {
        key: 'api.tls.keyFile',
        message: `api.tls.keyFile: "${tls}" is readable by other users (mode 0644); run: chmod 600 ${tls}`,
        fields: { file: tls, mode: '0644', fix: `chmod 600 ${tls}` },
      },
      {
        key: 'mesh.identityFile',
        message: `mesh.identityFile: "${identity}" is readable by other users (mode 0640); run: chmod 600 ${identity}`,
        fields: { file: identity, mode: '0640', fix: `chmod 600 ${identity}` },
      },
      {
        key: 'mesh.pskFile',
        message: `mesh.pskFile: "${psk}" is readable by other users (mode 0604); run: chmod 600 ${psk}`,
        fields: { file: psk, mode: '0604', fix: `chmod 600 ${psk}` },
      },
    ])
  })

  it('says nothing about owner-only files or an identity file not created yet', () => {
    keyFile('api.key', 0o600)
    keyFile('swarm.key', 0o400)
    write('api.crt', 'cert')
    const c = loaded(
      write('c.json', {
        ...minimal,
        api: { apiKey: LONG_KEY, tls: { certFile: 'api.crt', keyFile: 'api.key' } },
        mesh: { listen: ['/ip4/127.0.0.1/tcp/1'], identityFile: 'new.key', pskFile: 'swarm.key' },
      }),
    )
    expect(c.warnings).toEqual([])
  })

  it('names SSLKeyfile in arbiter.conf and quotes a path with spaces in the chmod', () => {
    const file = keyFile('my api.key', 0o644)
    write('api.crt', 'cert')
    const text = `${tutorialConf(0)}SSLKeyfile = my api.key\nSSLCertfile = api.crt\n`
    const c = loaded(write('arbiter.conf', text))
    const w = c.warnings.find((x) => x.key === 'SSLKeyfile')
    expect(w?.message).toBe(
      `SSLKeyfile: "${file}" is readable by other users (mode 0644); run: chmod 600 '${file}'`,
    )
  })
})

describe('test hooks out of production (issue 16)', () => {
  const WHY = 'test-only hook, refused unless the environment has TRAKTOR_TESTING=1'

  it('refuses testing keys without TRAKTOR_TESTING=1, naming each key', () => {
    const crash = write('a.json', { ...minimal, testing: { crashAt: 'decision' } })
    expect(problemsOf(crash)).toEqual([`testing.crashAt: ${WHY}`])
    for (const value of ['', '0', 'true', 'yes']) {
      expect(problemsOf(crash, { TRAKTOR_TESTING: value })).toEqual([`testing.crashAt: ${WHY}`])
    }
    const both = write('b.json', { ...minimal, testing: { crashAt: 'decision', routes: false } })
    expect(problemsOf(both)).toEqual([`testing.crashAt: ${WHY}`, `testing.routes: ${WHY}`])
    const fence = write('d.json', { ...minimal, testing: { fence: false } })
    expect(problemsOf(fence)).toEqual([`testing.fence: ${WHY}`])
    const freeze = write('e.json', { ...minimal, testing: { freezeAt: 'decision' } })
    expect(problemsOf(freeze)).toEqual([`testing.freezeAt: ${WHY}`])
    expect(problemsOf(write('c.json', { ...minimal, testing: {} }))).toEqual([`testing: ${WHY}`])
  })

  it('reports the gate with every other problem at once', () => {
    const path = write('c.json', { ...minimal, nodeId: -1, testing: { crashAt: 'later' } })
    expect(problemsOf(path)).toEqual([
      'nodeId: must be an integer >= 0, got -1',
      'testing.crashAt: must be one of "prepare-sent", "some-acks", "decision", "some-commits", ' +
        '"one-publish", "ddl-drained", "ddl-prepared", got "later"',
      `testing.crashAt: ${WHY}`,
    ])
  })

  it('allows them with TRAKTOR_TESTING=1 and returns a loud warning', () => {
    const path = write('c.json', {
      ...minimal,
      api: { apiKey: '0123456789abcdef' },
      testing: { crashAt: 'some-acks', routes: true },
    })
    const c = loaded(path, { TRAKTOR_TESTING: '1' })
    expect(c.config.testing).toEqual({ crashAt: 'some-acks', routes: true })
    const frozen = loaded(
      write('f.json', {
        ...minimal,
        api: { apiKey: '0123456789abcdef' },
        testing: { freezeAt: 'decision' },
      }),
      { TRAKTOR_TESTING: '1' },
    )
    expect(frozen.warnings[0]?.message).toMatch(/testing\.freezeAt=decision stops \(SIGSTOP\)/)
    expect(frozen.warnings[0]?.fields).toEqual({ freezeAt: 'decision' })
    expect(c.warnings).toEqual([
      {
        key: 'testing',
        message:
          'TEST HOOKS ARE ON (TRAKTOR_TESTING=1): testing.crashAt=some-acks kills this arbiter ' +
          'in every proposal it coordinates; testing.routes opens PUT/DELETE ' +
          '/v1/testing/partition (cuts the mesh); never run this in production',
        fields: { crashAt: 'some-acks', routes: true },
      },
    ])
  })

  it('needs no TRAKTOR_TESTING for a config without testing keys', () => {
    expect(loaded(write('c.json', minimal)).config.testing).toBeUndefined()
  })
})

describe('commit (issue 15)', () => {
  it('refuses sync mode without a mesh, and anything but async or sync', () => {
    expect(problemsOf(write('sync.json', { ...minimal, commit: 'sync' }))).toEqual([
      `commit: "sync" needs mesh mode (a "mesh" section): it waits for the mesh's peers`,
    ])
    expect(problemsOf(write('sync2.json', { ...minimal, commit: 'quorum' }))).toEqual([
      'commit: must be one of "async", "sync", got "quorum"',
    ])
  })
})

describe('join (issue 12)', () => {
  it('defaults to copying into empty tables and refuses an unknown mode', () => {
    expect(load(write('j.json', minimal)).join).toBe('empty-only')
    expect(load(write('k.json', { ...minimal, join: 'no-copy' })).join).toBe('no-copy')
    expect(problemsOf(write('l.json', { ...minimal, join: 'always' }))).toEqual([
      'join: must be one of "empty-only", "copy", "no-copy", got "always"',
    ])
  })
})
