#!/usr/bin/env bash
# What a tsgun worker costs in system calls next to a bare node:http process on the same app
# (bench/apps/suite.mjs): per idle second (wake-ups: the heartbeat, timers, the watchdog
# thread) and per request under a fixed load (wrk over keep-alive connections). Traces one
# process at a time with `strace -f` (all its threads), so the figures are counts, not times:
# strace slows the traced process, and a count per request is what stays comparable.
#
#   bench/syscalls.sh [ROOT] [IDLE_S] [LOAD_S]
#
# ROOT: the tsgun checkout whose bin/tsgun and dist/ to run (default: this one; build it
# first); IDLE_S: seconds of idle trace (10); LOAD_S: seconds of wrk per workload (4).
# Needs strace and wrk; prints a table. Every process started here is stopped at the end.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
ROOT=$(cd "${1:-$HERE}" && pwd)
IDLE_S=${2:-10}
LOAD_S=${3:-4}
TMP=$(mktemp -d /tmp/tsgun-syscalls.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
wait_http() { for _ in $(seq 200); do curl -fs "http://127.0.0.1:$1/" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer on $1" >&2; exit 1; }

P1=$(free_port)
node "$ROOT/bin/tsgun" -w 1 -b "127.0.0.1:$P1" "$HERE/bench/apps/suite.mjs:default" >"$TMP/tsgun.log" 2>&1 &
MASTER=$!
PIDS+=("$MASTER")
P2=$(free_port)
PORT=$P2 node "$HERE/bench/apps/node-http.mjs" &
BARE=$!
PIDS+=("$BARE")
wait_http "$P1"
wait_http "$P2"
for _ in $(seq 100); do grep -q 'Booting worker' "$TMP/tsgun.log" && break; sleep 0.1; done
WORKER=$(pgrep -P "$MASTER" -f 'tsgun: worker' | head -1)
# Warm both up, so the JIT's first compilations are not in the trace.
for p in "$P1" "$P2"; do wrk -t1 -c32 -d2s "http://127.0.0.1:$p/json" >/dev/null; done
sleep 1

# ---- idle: every system call of every thread, by thread -------------------------------------
idle() { # pid name
  timeout -s INT "$IDLE_S" strace -f -qq -o "$TMP/idle-$2" -p "$1" 2>/dev/null || true
  local total threads
  total=$(grep -cv 'resumed>' "$TMP/idle-$2" || true)
  # By thread, named as the kernel knows it (node: the main thread; WorkerThread: the
  # watchdog; V8 platform and libuv threads by their own names).
  threads=$(awk '!/resumed>/ {print $1}' "$TMP/idle-$2" | sort | uniq -c | sort -rn | while read -r n tid; do
    printf '%s %s, ' "$(cat "/proc/$1/task/$tid/comm" 2>/dev/null || echo "$tid")" "$n"; done | sed 's/, $//')
  printf '| %s | idle | %.1f syscalls/s | per thread (calls in %s s): %s |\n' "$2" "$(echo "$total / $IDLE_S" | bc -l)" "$IDLE_S" "$threads"
  awk '!/resumed>/ { sub(/\(.*/, "", $2); print $2 }' "$TMP/idle-$2" | sort | uniq -c | sort -rn | head -8 | awk -v s="$IDLE_S" '{printf "|   | | %s: %.1f/s | |\n", $2, $1/s}'
}
echo "| process | phase | syscalls | detail |"
echo "|---|---|---:|---|"
idle "$WORKER" tsgun-worker >"$TMP/idle-1.txt" &
I1=$!
idle "$BARE" node-bare >"$TMP/idle-2.txt" &
I2=$!
wait "$I1" "$I2"
cat "$TMP/idle-1.txt" "$TMP/idle-2.txt"

# ---- load: strace -c over a fixed time, divided by the requests wrk counted -------------------
load() { # pid port name path conns
  strace -c -f -qq -o "$TMP/load-$3" -p "$1" 2>/dev/null &
  local st=$!
  sleep 0.5
  local reqs
  reqs=$(wrk -t1 -c"$5" -d"${LOAD_S}s" "http://127.0.0.1:$2$4" | awk '/requests in/ {print $1}')
  kill -INT "$st"; wait "$st" 2>/dev/null || true
  local calls
  calls=$(awk '$NF == "total" {print $4}' "$TMP/load-$3")
  # The per-syscall lines: calls per request for the top ones.
  local top
  top=$(awk '$1 ~ /^[0-9.]+$/ && $NF != "total" { print $NF, $4 }' "$TMP/load-$3" | sort -k2 -rn | head -6 | awk -v r="$reqs" '{printf "%s%s %.2f", (NR>1?", ":""), $1, $2/r}')
  printf '| %s | %s -c%s | %.2f syscalls/req (%s req) | %s |\n' "$3" "$4" "$5" "$(echo "$calls / $reqs" | bc -l)" "$reqs" "$top"
}
for conns in 1 32; do
  for path in / /json; do
    load "$WORKER" "$P1" tsgun-worker "$path" "$conns"
    load "$BARE" "$P2" node-bare "$path" "$conns"
  done
done
