// TRAKTOR's arbiter.conf keys and quirks, kept apart from the native format so that an existing
// TRAKTOR install keeps working unchanged; the generic INI tokenizer is ini.ts.

import { parseIni } from './ini.js'
import { type Raw, show } from './schema.js'

const INI_KEYS: Record<string, string> = {
  nodeid: 'NodeID',
  connectionstring: 'ConnectionString',
  apiaddress: 'APIAddress',
  checkinterval: 'CheckInterval',
  apikey: 'APIKey',
  lsnresolver: 'LSNResolver',
  sslkeyfile: 'SSLKeyfile',
  sslcertfile: 'SSLCertfile',
}

/** Config paths → the arbiter.conf key that sets them, so problems name the key as written. */
export const INI_LABELS: ReadonlyArray<[string, string]> = [
  ['nodeId', 'NodeID'],
  ['postgres', 'ConnectionString'],
  ['api.listen', 'APIAddress'],
  ['api.apiKey', 'APIKey'],
  ['api.tls.certFile', 'SSLCertfile'],
  ['api.tls.keyFile', 'SSLKeyfile'],
]

/** TRAKTOR's arbiter.conf (section [DEFAULT]) → the native shape, plus its own problems. */
export function fromIni(
  text: string,
  env: Record<string, string | undefined>,
): { raw: Raw; problems: string[] } {
  const { sections, problems } = parseIni(text)
  const section = sections.get('DEFAULT')
  if (section === undefined) problems.push('[DEFAULT]: section missing')
  for (const name of sections.keys()) {
    if (name !== 'DEFAULT')
      problems.push(`[${name}]: unknown section (arbiter.conf uses [DEFAULT])`)
  }
  const known = Object.values(INI_KEYS).join(', ')
  for (const key of section?.keys() ?? []) {
    if (!(key in INI_KEYS)) problems.push(`${key}: unknown key (arbiter.conf keys: ${known})`)
  }
  const get = (key: string) => {
    const v = section?.get(key)
    return v === '' ? undefined : v
  }
  const raw: Raw = {}
  const api: Raw = {}
  raw.api = api

  const nodeId = get('nodeid')
  raw.nodeId = nodeId !== undefined && /^[+-]?\d+$/.test(nodeId) ? Number(nodeId) : nodeId
  raw.postgres = get('connectionstring')
  api.listen = get('apiaddress')
  api.apiKey = get('apikey')
  // these two keep a trailing "# ..." (see ini.ts), so TRAKTOR's template line
  // `APIKey =  # The secret API Key` would otherwise become the key itself
  const overridden = { connectionstring: 'TRAKTOR_POSTGRES', apikey: 'TRAKTOR_API_KEY' }
  for (const [key, envName] of Object.entries(overridden)) {
    if (/^[#;]/.test(get(key) ?? '') && !env[envName]) {
      problems.push(
        `${INI_KEYS[key]}: the value starts with "#" or ";" and looks like a comment ` +
          '(inline comments are not stripped from this key); set the real value',
      )
    }
  }

  const interval = get('checkinterval')
  if (interval !== undefined) {
    const ms = /^(\d+(\.\d*)?|\.\d+)$/.test(interval) ? Math.round(Number(interval) * 1000) : NaN
    if (ms >= 50 && ms <= 3_600_000) raw.checkIntervalMs = ms
    else problems.push(`CheckInterval: must be seconds from 0.05 to 3600, got ${show(interval)}`)
  }

  const resolver = section?.get('lsnresolver') ?? ''
  if (resolver === '') raw.resolver = 'off'
  else if (/^(file_fdw|log_fdw)$/i.test(resolver)) raw.resolver = 'skip'
  else problems.push(`LSNResolver: must be file_fdw, log_fdw or empty, got ${show(resolver)}`)

  const keyFile = get('sslkeyfile')
  const certFile = get('sslcertfile')
  if (keyFile !== undefined && certFile !== undefined) api.tls = { certFile, keyFile }
  else if (keyFile !== undefined)
    problems.push('SSLCertfile: missing (SSLKeyfile is set; TLS needs both)')
  else if (certFile !== undefined)
    problems.push('SSLKeyfile: missing (SSLCertfile is set; TLS needs both)')
  return { raw, problems }
}
