import { describe, expect, it } from 'vitest'
import { TraktorError } from '../../src/errors.js'
import {
  CONNINFO_KEYWORDS,
  formatConninfo,
  getParam,
  isConninfoUri,
  parseConninfo,
  redact,
  withoutPassword,
  withPassword,
} from '../../src/libpq/conninfo.js'

const entries = (s: string) => [...parseConninfo(s)]

function conninfoError(s: string): TraktorError {
  try {
    parseConninfo(s)
  } catch (e) {
    expect(e).toBeInstanceOf(TraktorError)
    expect((e as TraktorError).code).toBe('ERR_CONNINFO')
    return e as TraktorError
  }
  throw new Error(`parsed without error: ${s}`)
}

describe('parseConninfo, key/value', () => {
  it('reads the tutorial string in order', () => {
    const s =
      'host=127.0.0.1 port=5433 user=traktor_arbiter password=traktor dbname=traktor_tutorial'
    expect(entries(s)).toEqual([
      ['host', '127.0.0.1'],
      ['port', '5433'],
      ['user', 'traktor_arbiter'],
      ['password', 'traktor'],
      ['dbname', 'traktor_tutorial'],
    ])
  })

  it('allows spaces around "=" and between pairs', () => {
    expect(entries('  host =  h1\tport= 5433\n dbname =app  ')).toEqual([
      ['host', 'h1'],
      ['port', '5433'],
      ['dbname', 'app'],
    ])
  })

  it('keeps "=" inside unquoted values', () => {
    expect(getParam(parseConninfo('password=a=b=c user=u'), 'password')).toBe('a=b=c')
  })

  it('reads quoted values with spaces, quotes and backslashes', () => {
    const p = parseConninfo(String.raw`user='a b' options='-c x=\'y\' \\'`)
    expect(p.get('user')).toBe('a b')
    expect(p.get('options')).toBe("-c x='y' \\")
  })

  it('reads a password with every awkward character', () => {
    const p = parseConninfo(String.raw`password='Pa ss=w\'o\\rd #;' host=h`)
    expect(p.get('password')).toBe(String.raw`Pa ss=w'o\rd #;`)
    expect(p.get('host')).toBe('h')
  })

  it('never changes the case of values', () => {
    expect(getParam(parseConninfo('password=MiXeD user=TrAktor'), 'password')).toBe('MiXeD')
    expect(getParam(parseConninfo('password=MiXeD user=TrAktor'), 'user')).toBe('TrAktor')
  })

  it('treats a backslash in an unquoted value as an escape, as libpq does', () => {
    expect(getParam(parseConninfo(String.raw`password=a\ b\\c`), 'password')).toBe(
      String.raw`a b\c`,
    )
  })

  it('reads empty values', () => {
    expect(entries("password='' host=h")).toEqual([
      ['password', ''],
      ['host', 'h'],
    ])
    expect(entries('host=h password=')).toEqual([
      ['host', 'h'],
      ['password', ''],
    ])
  })

  it('keeps the first position and the last value of a repeated keyword', () => {
    expect(entries('host=a port=1 host=b')).toEqual([
      ['host', 'b'],
      ['port', '1'],
    ])
  })

  it('reads an empty string as no parameters', () => {
    expect(parseConninfo('   ').size).toBe(0)
  })

  it('rewrites the old requiressl keyword to sslmode', () => {
    expect(entries('requiressl=1')).toEqual([['sslmode', 'require']])
  })

  it('rejects an unknown keyword, naming it', () => {
    const e = conninfoError('host=h hots=x')
    expect(e.message).toContain('unknown keyword "hots"')
    expect(e.message).toContain('character 8')
  })

  it('hints that keywords are lower case', () => {
    expect(conninfoError('Host=h').message).toContain('keywords are lower case: "host"')
  })

  it('reports an unterminated quote with the keyword, not the value', () => {
    const e = conninfoError("host=h password='s3cret")
    expect(e.message).toContain('unterminated quoted value for "password"')
    expect(e.message).not.toContain('s3cret')
  })

  it('reports a missing "="', () => {
    expect(conninfoError('host').message).toContain('missing "=" after "host"')
    expect(conninfoError('=x').message).toContain('missing keyword')
  })

  it('does not echo the pieces of an unquoted password with a space', () => {
    for (const s of ['password=abc defg=h', 'password=abc defg', 'password=abc host']) {
      const e = conninfoError(s)
      expect(e.message).toContain('after the value of "password"')
      expect(e.message).not.toMatch(/abc|defg/)
    }
  })

  it('knows the PostgreSQL 17 keywords', () => {
    expect(CONNINFO_KEYWORDS.has('sslnegotiation')).toBe(true)
    expect(CONNINFO_KEYWORDS.has('load_balance_hosts')).toBe(true)
    expect(CONNINFO_KEYWORDS.size).toBe(41)
  })
})

describe('parseConninfo, URIs', () => {
  it('reads every part', () => {
    expect(isConninfoUri('postgresql://x')).toBe(true)
    expect(entries('postgresql://traktor:s3cret@db.example:5433/app?sslmode=require')).toEqual([
      ['user', 'traktor'],
      ['password', 's3cret'],
      ['host', 'db.example'],
      ['port', '5433'],
      ['dbname', 'app'],
      ['sslmode', 'require'],
    ])
  })

  it('accepts the short scheme and missing parts', () => {
    expect(entries('postgres://')).toEqual([])
    expect(entries('postgres://h')).toEqual([['host', 'h']])
    expect(entries('postgresql:///app')).toEqual([['dbname', 'app']])
    expect(entries('postgresql://u@h')).toEqual([
      ['user', 'u'],
      ['host', 'h'],
    ])
  })

  it('percent-decodes, keeping case', () => {
    const p = parseConninfo(
      'postgresql://us%40er:P%40ss%20W%3Ard%2F%3F%23@h/my%20Db?options=-c%20a%3Db',
    )
    expect(p.get('user')).toBe('us@er')
    expect(p.get('password')).toBe('P@ss W:rd/?#')
    expect(p.get('dbname')).toBe('my Db')
    expect(p.get('options')).toBe('-c a=b')
  })

  it('allows ":" in the password and "?" before the "@"', () => {
    expect(getParam(parseConninfo('postgresql://u:a:b?c@h'), 'password')).toBe('a:b?c')
  })

  it('reads IPv6 addresses in brackets', () => {
    expect(entries('postgresql://[::1]:5433/app')).toEqual([
      ['host', '::1'],
      ['port', '5433'],
      ['dbname', 'app'],
    ])
    expect(getParam(parseConninfo('postgresql://[fe80::1%25eth0]'), 'host')).toBe('fe80::1%eth0')
  })

  it('maps ssl=true to sslmode=require', () => {
    expect(getParam(parseConninfo('postgresql://h?ssl=true'), 'sslmode')).toBe('require')
  })

  it('rejects what libpq rejects, and more than one host', () => {
    expect(conninfoError('postgresql://a,b/db').message).toContain('more than one host')
    expect(conninfoError('postgresql://[::1/db').message).toContain('missing "]"')
    expect(conninfoError('postgresql://[]/db').message).toContain('empty IPv6')
    expect(conninfoError('postgresql://[::1]x').message).toContain('unexpected "x"')
    expect(conninfoError('postgresql://h?bogus=1').message).toContain('"bogus"')
    expect(conninfoError('postgresql://h?sslmode').message).toContain('has no "="')
    expect(conninfoError('postgresql://h/a%2').message).toContain('percent-encoding')
    expect(conninfoError('postgresql://h/a%00').message).toContain('%00')
  })

  it('never echoes a bad password', () => {
    const e = conninfoError('postgresql://u:s3cr%zzet@h')
    expect(e.message).toContain('password')
    expect(e.message).not.toContain('s3cr')
    expect(conninfoError('postgresql://h?password=a=b').message).not.toContain('a=b')
  })
})

describe('formatConninfo', () => {
  it('quotes only what needs it', () => {
    const p = new Map([
      ['host', 'h'],
      ['password', String.raw`a b'c\d`],
      ['user', ''],
      ['options', '-c x=y'],
      ['dbname', 'a=b'],
    ])
    expect(formatConninfo(p)).toBe(
      String.raw`host=h password='a b\'c\\d' user='' options='-c x=y' dbname=a=b`,
    )
  })

  it('round-trips awkward values', () => {
    const values = [
      '',
      ' ',
      "'",
      '\\',
      "\\'",
      'a=b',
      '#x ;y',
      'MiXeD Case',
      'tab\there',
      "''",
      'é ü',
    ]
    for (const v of values) {
      const p = new Map([
        ['password', v],
        ['host', 'h'],
      ])
      expect(parseConninfo(formatConninfo(p))).toEqual(p)
    }
  })

  it('round-trips a URI into key/value form', () => {
    const uri = 'postgres://u:p%20w@[::1]:5433/db?application_name=x'
    const kv = formatConninfo(parseConninfo(uri))
    expect(kv).toBe("user=u password='p w' host=::1 port=5433 dbname=db application_name=x")
    expect(parseConninfo(kv)).toEqual(parseConninfo(uri))
  })

  it('refuses unknown keywords', () => {
    expect(() => formatConninfo([['nope', 'x']])).toThrow(/unknown keyword "nope"/)
  })
})

describe('password helpers', () => {
  const s = "host=h password='se cret' user=u sslpassword=k"

  it('withoutPassword drops password and sslpassword', () => {
    expect(withoutPassword(s)).toBe('host=h user=u')
    expect(withoutPassword('postgresql://u:pw@h/db')).toBe('user=u host=h dbname=db')
  })

  it('withPassword replaces in place or appends', () => {
    expect(withPassword('host=h password=old user=u', "n'w")).toBe(
      String.raw`host=h password='n\'w' user=u`,
    )
    expect(withPassword('host=h', 'pw')).toBe('host=h password=pw')
  })

  it('redact hides secrets and never throws', () => {
    expect(redact(s)).toBe('host=h password=**** user=u sslpassword=****')
    expect(redact('postgresql://u:pw@h')).toBe('user=u password=**** host=h')
    expect(redact('host=h')).toBe('host=h')
    expect(redact("password='unterminated")).toBe('<invalid connection string>')
  })
})
