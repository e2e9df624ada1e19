#!/usr/bin/env bash
# `gatekeeper inventory` on a 50,000-file checkout beside `git ls-files -z | xargs -0 sha256sum`
# (SPEC §7: hashing in parallel). Usage: scripts/bench/inventory.sh [FILES] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
FILES=${1:-50000}; RUNS=${2:-10}
if ! command -v hyperfine >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null
fi
cargo build --release -q
GK="$PWD/target/release/gatekeeper"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
R="$WORK/repo"
git init -q -b main "$R"
python3 scripts/bench/gen_repo.py "$FILES" | git -C "$R" fast-import --quiet
git -C "$R" checkout -q main
hyperfine --warmup 2 --runs "$RUNS" --export-json "$WORK/inv.json" \
  -n "git ls-files -z | xargs -0 sha256sum" "cd $R && git ls-files -z | xargs -0 sha256sum > /dev/null" \
  -n "gatekeeper inventory" "$GK -C $R inventory --out $WORK/inventory.json"
python3 - "$WORK/inv.json" <<'PY'
import json, sys
r = {x["command"]: x["median"] for x in json.load(open(sys.argv[1]))["results"]}
a = r["git ls-files -z | xargs -0 sha256sum"]; b = r["gatekeeper inventory"]
print(f"sha256sum: median {a*1000:.0f} ms; gatekeeper inventory: median {b*1000:.0f} ms; ratio {b/a:.2f}x")
PY
