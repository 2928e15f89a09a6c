import { describe, expect, it } from 'vitest'
import { checkApiKey } from '../../src/api/auth.js'

describe('checkApiKey', () => {
  it('tells ok, missing and wrong apart', () => {
    expect(checkApiKey('LetMeIn', 'LetMeIn')).toBe('ok')
    expect(checkApiKey('LetMeIn', undefined)).toBe('missing')
    expect(checkApiKey('LetMeIn', '')).toBe('missing')
    expect(checkApiKey('LetMeIn', 'letmein')).toBe('wrong')
    expect(checkApiKey('LetMeIn', 'LetMeIn ')).toBe('wrong')
    expect(checkApiKey('LetMeIn', ['LetMeIn', 'LetMeIn'])).toBe('wrong')
  })
})
