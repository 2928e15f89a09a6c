import { describe, expect, it } from 'vitest'
import { parseIni } from '../../src/config/ini.js'

const defaults = (text: string) => parseIni(text).sections.get('DEFAULT')

describe('parseIni', () => {
  it('reads the tutorial arbiter.conf of node 0', () => {
    const text = [
      '[DEFAULT]',
      'NodeID = 0',
      'ConnectionString = host=127.0.0.1 port=5433 user=traktor_arbiter password=traktor ' +
        'dbname=traktor_tutorial',
      'APIAddress = 127.0.0.1:8080',
      'CheckInterval = 10',
      'APIKey =  LetMeIn',
      'LSNResolver = file_fdw',
      '',
    ].join('\n')
    const { sections, problems } = parseIni(text)
    expect(problems).toEqual([])
    expect([...(sections.get('DEFAULT') ?? [])]).toEqual([
      ['nodeid', '0'],
      [
        'connectionstring',
        'host=127.0.0.1 port=5433 user=traktor_arbiter password=traktor dbname=traktor_tutorial',
      ],
      ['apiaddress', '127.0.0.1:8080'],
      ['checkinterval', '10'],
      ['apikey', 'LetMeIn'],
      ['lsnresolver', 'file_fdw'],
    ])
  })

  it('accepts ":" as the delimiter and splits at the first delimiter', () => {
    const d = defaults('[DEFAULT]\nAPIAddress: 127.0.0.1:8080\nx = a:b=c\n')
    expect(d?.get('apiaddress')).toBe('127.0.0.1:8080')
    expect(d?.get('x')).toBe('a:b=c')
  })

  it('lower-cases keys but not values', () => {
    expect(defaults('[DEFAULT]\nAPIKEY = MiXeD\n')?.get('apikey')).toBe('MiXeD')
  })

  it('skips full-line comments and blank lines, and handles CRLF and a BOM', () => {
    const d = defaults(
      '\uFEFF# top\r\n[DEFAULT]\r\n; note\r\n   # indented comment\r\n\r\nA = 1\r\n',
    )
    expect([...(d ?? [])]).toEqual([['a', '1']])
  })

  it('strips inline comments only after whitespace', () => {
    const d = defaults(
      '[DEFAULT]\nCheckInterval = 10 # seconds\nLSNResolver = file_fdw ; or log_fdw\n' +
        'NodeID = # an integer\nAPIAddress = h#1\n',
    )
    expect(d?.get('checkinterval')).toBe('10')
    expect(d?.get('lsnresolver')).toBe('file_fdw')
    expect(d?.get('nodeid')).toBe('')
    expect(d?.get('apiaddress')).toBe('h#1')
  })

  it('takes ConnectionString and APIKey whole, since a secret may contain " #"', () => {
    const d = defaults(
      "[DEFAULT]\nConnectionString = host=h password='a #b ;c'\nAPIKey = key #1 ;2\n",
    )
    expect(d?.get('connectionstring')).toBe("host=h password='a #b ;c'")
    expect(d?.get('apikey')).toBe('key #1 ;2')
  })

  it('lets the caller choose which keys are taken whole', () => {
    const r = parseIni('[s]\nA = x # y\nB = x # y\n', { wholeValueKeys: ['b'] })
    expect(r.sections.get('s')?.get('a')).toBe('x')
    expect(r.sections.get('s')?.get('b')).toBe('x # y')
  })

  it('keeps other sections and section comments', () => {
    const r = parseIni('[DEFAULT]\na = 1\n[other] # note\nb = 2\n')
    expect(r.problems).toEqual([])
    expect(r.sections.get('other')?.get('b')).toBe('2')
  })

  it('reports problems with line numbers, without values', () => {
    const text = [
      'early = 1', // 1
      '[DEFAULT]', // 2
      'no delimiter here', // 3
      '= value', // 4
      'A = 1', // 5
      'a = 2', // 6
      '  continued secret', // 7
      '[broken', // 8
      '[DEFAULT]', // 9
    ].join('\n')
    const { problems } = parseIni(text)
    expect(problems).toEqual([
      'line 1: "early" comes before any [section] (start with [DEFAULT])',
      'line 3: expected "key = value"',
      'line 4: expected "key = value"',
      'line 6: "a" is already set on line 5',
      'line 7: indented line would continue the previous value; unindent it',
      'line 8: expected "[section]"',
      'line 9: section [DEFAULT] repeats line 2',
    ])
    expect(problems.join('\n')).not.toContain('secret')
  })
})
