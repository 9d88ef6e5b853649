#!/usr/bin/env bash
# Serve a built Next.js app through tsgun as a user would: tsgun packed from this checkout,
# installed into a copy of examples/nextjs with next, react and react-dom (never into the repo's
# node_modules), `next build`, then `tsgun -w 2 'server:create()'`. Needs the npm registry.
# Usage: scripts/check-nextjs.sh [scratch-dir]   (default: a new directory under /tmp)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
scratch nextjs "${1:-}"

# The project is examples/nextjs, as a user would have it, with tsgun from the tarball.
cp -r "$repo/examples/nextjs/." "$work/app/"
cd "$work/app"
rm -rf .next
echo "== npm install next react react-dom $tarball"
npm install --no-audit --no-fund --silent next react react-dom "$work/pkg/$tarball"

echo "== next build"
npx next build >"$work/build.log" 2>&1 || { tail -30 "$work/build.log"; exit 1; }

tsgun_start 'server:create()'

fail=0
page=$(curl -s -o "$work/page.html" -w '%{http_code}' "$url/")
grep -q 'rendered this with Next.js' "$work/page.html" && [ "$page" = 200 ] && echo "ok   GET / -> $page, the page rendered" || { echo "FAIL GET / -> $page"; fail=1; }
pids=$(for _ in $(seq 20); do curl -s "$url/api/status"; echo; done | grep '"status":"ok"' | sort -u | wc -l)
[ "$pids" -ge 1 ] && echo "ok   GET /api/status x20 -> answered by $pids worker(s)" || { echo "FAIL GET /api/status"; fail=1; }
missing=$(curl -s -o /dev/null -w '%{http_code}' "$url/no-such-page")
[ "$missing" = 404 ] && echo "ok   GET /no-such-page -> 404" || { echo "FAIL GET /no-such-page -> $missing"; fail=1; }

tsgun_stop
[ $fail = 0 ] || { cat "$log"; exit 1; }
echo "next $(node -p "require('next/package.json').version") served by tsgun $(node -p "require('tsgun/package.json').version"): all checks passed ($work)"
