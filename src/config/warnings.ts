// What a config may say that works but should not be left so: an API key shorter than
// recommended, a key file that other users can read, test hooks switched on. The loader
// returns these with the frozen config and `traktor start` logs each once (warn) before the
// arbiter starts: an operator sees them, and nothing is refused for them. No warning holds a
// secret.

import { statSync } from 'node:fs'
import { API_KEY_GOOD_LENGTH, TESTING_ENV } from './schema.js'
import type { Config } from './types.js'

export interface ConfigWarning {
  /** the key as the user wrote it: an INI key, an environment variable or a config path */
  readonly key: string
  /** one line for people, starting with the key; never a secret */
  readonly message: string
  /** structured fields for the log line */
  readonly fields: Readonly<Record<string, string | number | boolean>>
}

/** Names a config path the way the user wrote it (see load.ts). */
export type Label = (path: string) => string

// bits for group read and others read: a private key's owner is its only reader
const READABLE_BY_OTHERS = 0o044

/** A path as a shell word, so the printed chmod can be pasted as it is. */
function shellWord(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`
}

function apiKeyWarning(config: Config, label: Label): ConfigWarning | undefined {
  if ([...config.api.apiKey].length >= API_KEY_GOOD_LENGTH) return undefined
  const key = label('api.apiKey')
  return {
    key,
    message:
      `${key}: shorter than ${API_KEY_GOOD_LENGTH} characters; use a longer random key ` +
      '(e.g. the output of "openssl rand -hex 24")',
    fields: { recommendedLength: API_KEY_GOOD_LENGTH },
  }
}

function keyFileWarning(path: string, file: string | undefined, label: Label) {
  if (file === undefined) return undefined
  let mode: number
  try {
    mode = statSync(file).mode & 0o777
  } catch {
    // the identity file is created (0600) on first start; the others were checked readable
    return undefined
  }
  if ((mode & READABLE_BY_OTHERS) === 0) return undefined
  const key = label(path)
  const octal = `0${mode.toString(8).padStart(3, '0')}`
  const fix = `chmod 600 ${shellWord(file)}`
  return {
    key,
    message: `${key}: "${file}" is readable by other users (mode ${octal}); run: ${fix}`,
    fields: { file, mode: octal, fix },
  } satisfies ConfigWarning
}

function testingWarning(config: Config): ConfigWarning | undefined {
  const t = config.testing
  const hooks: string[] = []
  if (t?.crashAt !== undefined) {
    hooks.push(`testing.crashAt=${t.crashAt} kills this arbiter in every proposal it coordinates`)
  }
  if (t?.freezeAt !== undefined) {
    hooks.push(
      `testing.freezeAt=${t.freezeAt} stops (SIGSTOP) this arbiter in the first proposal it coordinates`,
    )
  }
  if (t?.fence === false) {
    hooks.push(
      'testing.fence=false raises no write fence: rows written while a table is added can be lost',
    )
  }
  if (t?.routes === true) {
    hooks.push('testing.routes opens PUT/DELETE /v1/testing/partition (cuts the mesh)')
  }
  if (hooks.length === 0) return undefined
  return {
    key: 'testing',
    message: `TEST HOOKS ARE ON (${TESTING_ENV}=1): ${hooks.join('; ')}; never run this in production`,
    fields: {
      ...(t?.crashAt === undefined ? {} : { crashAt: t.crashAt }),
      ...(t?.freezeAt === undefined ? {} : { freezeAt: t.freezeAt }),
      ...(t?.routes === undefined ? {} : { routes: t.routes }),
      ...(t?.fence === undefined ? {} : { fence: t.fence }),
    },
  }
}

/** Every warning for a loaded config, in the order of the config's keys. */
export function configWarnings(config: Config, label: Label): ConfigWarning[] {
  const found = [
    apiKeyWarning(config, label),
    // mode bits mean nothing on Windows, where every file would look readable by others
    ...(process.platform === 'win32'
      ? []
      : [
          keyFileWarning('api.tls.keyFile', config.api.tls?.keyFile, label),
          keyFileWarning('mesh.identityFile', config.mesh?.identityFile, label),
          keyFileWarning('mesh.pskFile', config.mesh?.pskFile, label),
        ]),
    testingWarning(config),
  ]
  return found.filter((w): w is ConfigWarning => w !== undefined)
}
