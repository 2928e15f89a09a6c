// `traktor ctl` on util.parseArgs (issue 9): the usage text, written from the option table,
// is the text users have always read, and what a shell user types reads as it always did
// where util.parseArgs alone would read it otherwise (an optional SECONDS, "-1" as a word).
import { describe, expect, it } from 'vitest'
import { parseArgs, USAGE } from '../../src/ctl/args.js'

const OLD_USAGE = `traktor ctl — the cluster from a shell

usage: traktor ctl [options] COMMAND

commands:
  status                          every node: state, replication, conflicts, lag, subscriptions
  nodes                           the members as the asked arbiter sees them
  replicaset list                 the replicated tables and the replicaset version
  replicaset add SCHEMA.TABLE     add a table on every node (all acknowledge, or nothing changes)
  replicaset remove SCHEMA.TABLE  remove a table from every node
  history                         conflicts and apply errors the resolvers recorded, every node
  remove-node ID                  remove a node from the cluster (ask one of the other nodes)
  readmit-node ID                 take a removed node back; it joins again (ask a member)
  resync ID                       copy the cluster's data again on a node (its rows are replaced)
  check [SCHEMA.TABLE]            compare the replicated tables (or one) on every node
  check SCHEMA.TABLE --repair     set differing rows to the last writer's version, or --from NODE's
  commit sync|async               set the commit mode on every node (all alive, or nothing changes)
  ddl "SQL"                       change the schema on every node at once (ALTER TABLE, indexes, tables)

options:
  --url URL          the arbiter to ask (default: $TRAKTOR_URL, else http://127.0.0.1:8080)
  --api-key KEY      its API key (default: $TRAKTOR_API_KEY; the variable keeps it out of ps)
  --json             print the server's JSON answer, pretty, instead of a table
  --watch [SECONDS]  redraw every SECONDS (default 2) until Ctrl-C; status, nodes, history
  --timeout MS       wait at most MS ms for an answer (default 10000, changes 60000, check 600000)
  --repair           check: set the differing rows of SCHEMA.TABLE to their winning version
  --from NODE        with --repair: take NODE's version of every differing row
  --quorum K         commit sync: a commit waits for K peers (default every live one)
  -h, --help         this text

exit codes: 0 ok, 1 refused, aborted, (status) not healthy or (check) rows differ, 2 usage error,
            3 arbiter unreachable, 4 API key missing or wrong`

const run = (argv: string[]) => {
  const p = parseArgs(argv, {})
  if (p.kind !== 'run') throw new Error('expected a command')
  return p
}
const refused = (argv: string[]): string => {
  try {
    parseArgs(argv, {})
  } catch (err) {
    return (err as Error).message
  }
  throw new Error(`no usage error for ${argv.join(' ')}`)
}

describe('ctl on util.parseArgs', () => {
  it('prints the usage text users know, character for character', () => {
    expect(USAGE).toBe(OLD_USAGE)
  })

  it('reads words that look like options the way ctl always has', () => {
    // util.parseArgs would take these as short options
    expect(refused(['remove-node', '-1'])).toBe('node ID must be an integer >= 0, not "-1"')
    expect(refused(['remove-node', '-12'])).toBe('node ID must be an integer >= 0, not "-12"')
    expect(refused(['-hx', 'status'])).toBe('unknown option -hx')
    expect(refused(['-x=1', 'status'])).toBe('unknown option -x')
    // a value that starts with "-" is still the option's value
    expect(run(['--url', '--json', 'status']).options).toMatchObject({ json: false })
    // SECONDS only when it is a number right after --watch
    expect(run(['--watch', '5', 'nodes']).options.watchSeconds).toBe(5)
    expect(run(['--watch', 'nodes']).options.watchSeconds).toBe(2)
    expect(run(['--watch', '--', 'status']).options.watchSeconds).toBe(2)
    expect(refused(['--', '--json'])).toMatch(/^unknown command "--json"/)
  })

  it('says an option that takes no value takes none', () => {
    expect(refused(['--help=yes'])).toBe('--help takes no value')
    expect(refused(['--json=', 'status'])).toBe('--json takes no value')
  })
})
