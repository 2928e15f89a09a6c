// The operating-system side of the embedded servers: the unprivileged user they run as when we
// are root, the folder their data directories live in, and the clean-up that runs even when a
// test run is interrupted (process exit) or was killed earlier (stale folders are reaped).
import { type ChildProcess, execFile } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'

const execFileP = promisify(execFile)
const PG_OS_USER = 'traktor-pg'
const ROOT_NAME = 'traktor-pg'

let user: Promise<{ uid?: number; gid?: number }> | undefined

/** The uid/gid to run PostgreSQL as: ourselves, or a system user created on first use. */
export function osUser(): Promise<{ uid?: number; gid?: number }> {
  user ??= resolveUser()
  return user
}

async function resolveUser(): Promise<{ uid?: number; gid?: number }> {
  if (process.getuid?.() !== 0) return {}
  try {
    await execFileP('id', ['-u', PG_OS_USER])
  } catch {
    await execFileP('useradd', [
      '--system',
      '--no-create-home',
      '--shell',
      '/usr/sbin/nologin',
      PG_OS_USER,
    ]).catch(async (err: unknown) => {
      // two test files may race to create it
      await execFileP('id', ['-u', PG_OS_USER]).catch(() => {
        throw err
      })
    })
  }
  const uid = Number((await execFileP('id', ['-u', PG_OS_USER])).stdout.trim())
  const gid = Number((await execFileP('id', ['-g', PG_OS_USER])).stdout.trim())
  return { uid, gid }
}

/** The folder holding every server's folder; world-traversable so the pg user reaches it. */
export function workRoot(): string {
  const root = path.join(os.tmpdir(), ROOT_NAME)
  fs.mkdirSync(root, { recursive: true })
  fs.chmodSync(root, 0o755)
  return root
}

const live = new Map<string, ChildProcess>()
let hooked = false

/** Remember a running postmaster so that process exit stops it and removes its folder. */
export function registerForExit(dataDir: string, child: ChildProcess): void {
  live.set(dataDir, child)
  if (hooked) return
  hooked = true
  process.once('exit', () => {
    for (const [dir, proc] of live) {
      // immediate shutdown: we are exiting and cannot wait for a clean one
      proc.kill('SIGQUIT')
      fs.rmSync(path.dirname(dir), { recursive: true, force: true })
    }
  })
}

export function unregisterForExit(dataDir: string): void {
  live.delete(dataDir)
}

/** Remove servers left behind by a process that died without cleaning up (kill -9). */
export async function reapStale(): Promise<void> {
  const root = workRoot()
  for (const entry of fs.readdirSync(root)) {
    const base = path.join(root, entry)
    const owner = readPid(path.join(base, 'owner.pid'))
    if (owner === undefined || alive(owner)) continue
    const postmaster = readPid(path.join(base, 'data', 'postmaster.pid'))
    if (postmaster !== undefined && alive(postmaster)) {
      try {
        process.kill(postmaster, 'SIGQUIT')
      } catch {
        // already gone
      }
    }
    fs.rmSync(base, { recursive: true, force: true })
  }
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(fs.readFileSync(file, 'utf8').split('\n')[0])
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

/** A process with this pid exists (ours or another user's). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}
