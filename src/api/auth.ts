// X-API-KEY, compared in constant time: both sides are hashed first, so neither the length
// nor the content of the key leaks through timing.
import { createHash, timingSafeEqual } from 'node:crypto'

export type AuthVerdict = 'ok' | 'missing' | 'wrong'

export function checkApiKey(expected: string, given: string | string[] | undefined): AuthVerdict {
  if (given === undefined || given === '') return 'missing'
  if (Array.isArray(given)) return 'wrong'
  const a = createHash('sha256').update(expected).digest()
  const b = createHash('sha256').update(given).digest()
  return timingSafeEqual(a, b) ? 'ok' : 'wrong'
}
