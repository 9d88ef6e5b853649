# Shared by scripts/check-nestjs.sh and scripts/check-nextjs.sh (sourced, after `set -euo pipefail`):
# a scratch directory, tsgun packed from this checkout, and a `tsgun -w 2` started and stopped
# as a user would run it. Functions set globals that the scripts use: repo, work, log, tarball,
# pid, url; tsgun_stop sets fail=1 when the master does not exit 0.

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# scratch NAME [DIR]: the scratch directory (DIR, or a new one under /tmp) with pkg/ and app/,
# and tsgun packed from this checkout into pkg/.
scratch() {
  work=${2:-$(mktemp -d "/tmp/tsgun-$1.XXXXXX")}
  mkdir -p "$work/pkg" "$work/app"
  log=$work/tsgun.log
  echo "== npm pack $repo"
  tarball=$(cd "$repo" && npm pack --silent --pack-destination "$work/pkg" | tail -1)
}

# tsgun_start APP: `tsgun -w 2` on a free port in the current directory, killed at exit; waits
# until both workers are ready and sets url from the Listening at: line.
tsgun_start() {
  echo "== tsgun -w 2 -b 127.0.0.1:0 '$1'"
  node_modules/.bin/tsgun -w 2 -b 127.0.0.1:0 --log-format pretty "$1" >"$log" 2>&1 &
  pid=$!
  trap 'kill -KILL $pid 2>/dev/null || true' EXIT
  for _ in $(seq 120); do
    grep -q 'Ready: 2 workers' "$log" && break
    kill -0 $pid 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.5
  done
  url=$(grep -o 'Listening at: http://[0-9.:]*' "$log" | head -1 | cut -d' ' -f3)
  [ -n "$url" ] || { cat "$log"; echo "no Listening at: line"; exit 1; }
}

# tsgun_stop: TERM the master, expect exit 0.
tsgun_stop() {
  kill -TERM $pid
  local code=0
  wait $pid || code=$?
  trap - EXIT
  [ "$code" = 0 ] && echo "ok   TERM -> exit 0" || { echo "FAIL TERM -> exit $code"; fail=1; }
}
