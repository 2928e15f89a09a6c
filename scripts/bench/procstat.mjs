// What a process costs, read from /proc: RSS (/proc/<pid>/status VmRSS), CPU time
// (/proc/<pid>/stat utime + stime, in clock ticks) and bytes it wrote or read through
// read/write syscalls (/proc/<pid>/io wchar, rchar: for a process that only talks on sockets,
// its network traffic above TCP). A Sampler turns samples into RSS and CPU % figures.
import { execFileSync } from 'node:child_process'
import fs from 'node:fs'
import { percentile, round } from './util.mjs'

let ticks
function clockTicks() {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      ticks = 100
    }
  }
  return ticks
}

/** CPU seconds used so far (user + system); undefined if the process is gone. */
export function cpuSeconds(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    // the command name may hold spaces: fields start after the last ')'
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / clockTicks()
  } catch {
    return undefined
  }
}

/** Resident set size in MiB; undefined if the process is gone. */
export function rssMiB(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8')
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)
    return m ? Number(m[1]) / 1024 : undefined
  } catch {
    return undefined
  }
}

/** Bytes read and written through syscalls so far. */
export function ioBytes(pid) {
  try {
    const io = fs.readFileSync(`/proc/${pid}/io`, 'utf8')
    const get = (k) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(io)?.[1] ?? Number.NaN)
    return { rchar: get('rchar'), wchar: get('wchar') }
  } catch {
    return undefined
  }
}

/** Samples one process every `everyMs` until stopped: RSS and CPU % per interval. */
export class Sampler {
  constructor(pid, everyMs = 500) {
    this.pid = pid
    this.everyMs = everyMs
    this.rss = []
    this.cpu = []
    this.cpuTotal = 0
    this.wallTotal = 0
  }

  start() {
    this.last = { t: performance.now(), cpu: cpuSeconds(this.pid) }
    this.sample(false)
    this.timer = setInterval(() => this.sample(true), this.everyMs)
    return this
  }

  sample(withCpu) {
    const rss = rssMiB(this.pid)
    if (rss !== undefined) this.rss.push(rss)
    if (!withCpu) return
    const now = { t: performance.now(), cpu: cpuSeconds(this.pid) }
    if (now.cpu !== undefined && this.last.cpu !== undefined) {
      const wall = (now.t - this.last.t) / 1000
      const used = now.cpu - this.last.cpu
      this.cpu.push((100 * used) / wall)
      this.cpuTotal += used
      this.wallTotal += wall
    }
    this.last = now
  }

  /** Stop and summarise: RSS MiB and CPU % (of one core) samples, and the mean CPU %. */
  stop() {
    clearInterval(this.timer)
    this.sample(true)
    return {
      rss: this.rss,
      cpu: this.cpu,
      cpuMean: this.wallTotal > 0 ? (100 * this.cpuTotal) / this.wallTotal : undefined,
      seconds: this.wallTotal,
    }
  }
}

/** One line about the machine's load, for the results (other sessions share this box). */
export function machineLoad() {
  const others = []
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      const cmd = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ')
      if (/vitest|tsc -p|traktor\.js start/.test(cmd) && !isOurs(Number(entry))) {
        others.push(cmd.trim().slice(0, 100))
      }
    } catch {
      // the process ended
    }
  }
  return others
}

function isOurs(pid) {
  // our own arbiters are children of this process
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    return ppid === process.pid
  } catch {
    return false
  }
}

/** The CPU % and RSS summary of a Sampler as published numbers. */
export function summary(s) {
  return {
    rssP50: round(percentile(s.rss, 50)),
    rssMax: round(Math.max(...s.rss)),
    cpuP50: round(percentile(s.cpu, 50)),
    cpuMean: round(s.cpuMean),
  }
}

/** CPU seconds the whole machine has been busy (/proc/stat, every core). */
function machineBusySeconds() {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]
  const f = line.trim().split(/\s+/).slice(1).map(Number)
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0)
  return (total - f[3] - f[4]) / clockTicks()
}

/** CPU seconds of this process and every descendant, live or already reaped. */
function ourTreeSeconds() {
  const parent = new Map()
  const times = new Map()
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      parent.set(Number(entry), Number(f[1]))
      // utime stime cutime cstime: its own time and that of its reaped children
      times.set(
        Number(entry),
        (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / clockTicks(),
      )
    } catch {
      // the process ended
    }
  }
  const ours = (pid) => {
    for (let p = pid, hops = 0; p > 1 && hops < 64; p = parent.get(p) ?? 0, hops++) {
      if (p === process.pid) return true
    }
    return false
  }
  let sum = 0
  for (const [pid, t] of times) if (ours(pid)) sum += t
  return sum
}

/**
 * How busy the rest of the machine was while something ran: start() then stop() gives the CPU
 * % (of one core) used by processes that are not ours — other sessions' tests, say.
 */
export function otherLoad() {
  const b0 = machineBusySeconds()
  const o0 = ourTreeSeconds()
  const t0 = performance.now()
  return {
    stop() {
      const secs = (performance.now() - t0) / 1000
      const busy = machineBusySeconds() - b0
      const ours = ourTreeSeconds() - o0
      return {
        seconds: round(secs),
        oursCpuPercent: round((100 * ours) / secs),
        othersCpuPercent: round((100 * Math.max(0, busy - ours)) / secs),
      }
    },
  }
}

/**
 * Wait (at most maxWaitMs) until processes that are not ours use at most maxPercent of one
 * core over a one-second window. Returns how long it waited and the last reading.
 */
export async function waitQuiet(maxPercent, maxWaitMs) {
  const t0 = performance.now()
  for (;;) {
    const l = otherLoad()
    await new Promise((r) => setTimeout(r, 1000))
    const { othersCpuPercent } = l.stop()
    const waitedMs = Math.round(performance.now() - t0)
    if (othersCpuPercent <= maxPercent || waitedMs >= maxWaitMs) {
      return { waitedMs, othersCpuPercent, quiet: othersCpuPercent <= maxPercent }
    }
  }
}
