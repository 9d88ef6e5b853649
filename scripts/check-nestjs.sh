#!/usr/bin/env bash
# The new-user path to a served NestJS app, as a user would type it: tsgun packed from this
# checkout, installed into a fresh project with NestJS, examples/nestjs copied in as src/.
# First without @swc/core (expects the one-line Error and exit 4), then with it (expects the
# injected service's answer from two workers and the Nest app closed on TERM). Needs the npm registry.
# Usage: scripts/check-nestjs.sh [scratch-dir]   (default: a new directory under /tmp)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
scratch nestjs "${1:-}"
cd "$work/app"
[ -f package.json ] || { npm init -y >/dev/null; npm pkg set type=module; }
echo "== npm install $tarball @nestjs/core @nestjs/common @nestjs/platform-express reflect-metadata rxjs"
npm install --no-audit --no-fund --silent "$work/pkg/$tarball" @nestjs/core @nestjs/common @nestjs/platform-express reflect-metadata rxjs
mkdir -p src && cp "$repo"/examples/nestjs/*.ts src/ && cp "$repo/examples/nestjs/tsconfig.json" .

fail=0
if [ -d node_modules/@swc/core ]; then
  echo "skip without @swc/core: it is installed in $work/app"
else
  code=0
  out=$(node_modules/.bin/tsgun -b 127.0.0.1:0 'src/main:create()' 2>&1) || code=$?
  if [ "$code" = 4 ] && grep -q '^Error: .*npm install @swc/core$' <<<"$out"; then echo "ok   without @swc/core -> exit 4, Error: line names npm install @swc/core"
  else echo "FAIL without @swc/core -> exit $code"; echo "$out" | tail -5; fail=1; fi
  echo "== npm install @swc/core"
  npm install --no-audit --no-fund --silent @swc/core
fi

tsgun_start 'src/main:create()'
grep -q 'TypeScript compiled by SWC' "$log" && echo "ok   boot log: TypeScript compiled by SWC" || { echo "FAIL no SWC line"; fail=1; }
cats=$(curl -s "$url/api/cats")
grep -q '"name":"Tom"' <<<"$cats" && echo "ok   GET /api/cats -> $cats (the injected CatsService)" || { echo "FAIL GET /api/cats -> $cats"; fail=1; }
added=$(curl -s -H 'content-type: application/json' -d '{"name":"Kit"}' "$url/api/cats")
grep -q '"name":"Kit"' <<<"$added" && echo "ok   POST /api/cats -> $added" || { echo "FAIL POST /api/cats -> $added"; fail=1; }
tsgun_stop
closed=$(grep -c 'Nest app closed' "$log" || true)
[ "$closed" = 2 ] && echo "ok   both workers ran the Nest app's close() (onApplicationShutdown)" || { echo "FAIL Nest app closed $closed times"; fail=1; }
[ $fail = 0 ] || { cat "$log"; exit 1; }
echo "NestJS $(node -p "require('@nestjs/core/package.json').version") served by tsgun from its tarball: all checks passed ($work)"
