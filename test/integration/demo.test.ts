// `traktor demo` is the quick start, so it runs in the suite: --exit must verify the cluster
// and exit 0; without it the cluster runs until Ctrl-C, which stops everything. Both leave
// no temporary folder and no PostgreSQL process behind.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { waitFor } from '../fixtures/arbiters.js'

const BIN = path.resolve(import.meta.dirname, '../../bin/traktor.js')

function run(args: string[]) {
  const child = spawn(process.execPath, [BIN, 'demo', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString()
  })
  child.stderr.on('data', (d: Buffer) => {
    out += d.toString()
  })
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => resolve(code)),
  )
  return { child, output: () => out, exited }
}

function leftovers(output: string): { dir: string | undefined; ports: number[] } {
  const dir = /logs: (\S+)\/arbiters\.log/.exec(output)?.[1]
  const ports = [...output.matchAll(/port=(\d+) dbname=demo/g)].map((m) => Number(m[1]))
  return { dir, ports }
}

async function portClosed(port: number): Promise<boolean> {
  const net = await import('node:net')
  return await new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => {
      s.destroy()
      resolve(false)
    })
    s.once('error', () => resolve(true))
  })
}

describe('traktor demo', () => {
  it('--exit walks through a 3-node cluster, verifies it and exits 0, leaving nothing', async () => {
    const d = run(['--exit'])
    const code = await d.exited
    const out = d.output()
    expect(code, out).toBe(0)
    expect(out).toMatch(/add demo\.greetings to the replicaset with one cluster call/)
    expect(out).toMatch(/201 committed/)
    expect(out).toMatch(/demo verified: every node holds every row/)
    expect(out).not.toMatch(/✗/)
    const { dir, ports } = leftovers(out)
    expect(ports).toHaveLength(3)
    expect(dir && fs.existsSync(dir)).toBeFalsy()
    for (const p of ports) expect(await portClosed(p)).toBe(true)
  })

  it('runs until Ctrl-C, then stops everything', async () => {
    const d = run(['--nodes', '2'])
    await waitFor(() => d.output().includes('runs until Ctrl-C'), 60_000, 'demo running')
    const { dir, ports } = leftovers(d.output())
    expect(ports).toHaveLength(2)
    for (const p of ports) expect(await portClosed(p)).toBe(false)
    d.child.kill('SIGINT')
    expect(await d.exited).toBe(0)
    expect(dir && fs.existsSync(dir)).toBeFalsy()
    for (const p of ports) expect(await portClosed(p)).toBe(true)
  })

  it('refuses a bad --nodes with exit 2', async () => {
    const d = run(['--nodes', 'x'])
    expect(await d.exited).toBe(2)
    expect(d.output()).toMatch(/--nodes must be an integer/)
  })
})
