#!/usr/bin/env bash
# SPEC §12: `gatekeeper ci` on a repository of 50,000 files with a 2,000-file change, beside
# `git diff --name-only` over the same range (target: ≤ 2×). The change is a real governed task:
# a prompt carrying a 2,000-file patch, run through all nine steps with the stand-ins.
# Usage: scripts/bench/ci.sh [FILES] [CHANGED] [RUNS]     (defaults 50000 2000 20)
set -euo pipefail
cd "$(dirname "$0")/../.."
FILES=${1:-50000}; CHANGED=${2:-2000}; RUNS=${3:-20}
if ! command -v hyperfine >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null
fi
cargo build --release -q
GK="$PWD/target/release/gatekeeper"
WORK=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "keeping $WORK" >&2 || trap 'rm -rf "$WORK"' EXIT
R="$WORK/repo"
git init -q -b main "$R"
python3 scripts/bench/gen_repo.py "$FILES" | git -C "$R" fast-import --quiet
git -C "$R" checkout -q main
git -C "$R" checkout -q -b pr
mkdir -p "$R/docs/ai-gated/prompt"
{
  printf '# Touch %d files\n\n## Allowed paths\n\n- `src/**`\n\n' "$CHANGED"
  for ((i = 0; i < CHANGED; i++)); do
    f=$(printf 'src/d%03d/f%02d.txt' $((i / 100)) $((i % 100)))
    printf '```diff\n--- a/%s\n+++ b/%s\n@@ -1,2 +1,2 @@\n-file %d\n+file %d changed\n line two\n```\n' "$f" "$f" "$i" "$i"
  done
} > "$R/docs/ai-gated/prompt/big.md"
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.invalid GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.invalid
start=$(date +%s%N)
"$GK" -C "$R" run big >/dev/null
echo "gatekeeper run (9 steps, ${CHANGED}-file patch, ${FILES}-file repo): $(( ($(date +%s%N) - start) / 1000000 )) ms"
"$GK" -C "$R" ci --base main >/dev/null
test "$(git -C "$R" diff --name-only main...HEAD | grep -c '^src/')" = "$CHANGED"
# -N (no shell): at a few milliseconds hyperfine's correction for the shell's start-up is coarser
# than the difference being measured; both commands are timed as the processes they are.
hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$WORK/ci.json" \
  -n "git diff --name-only main...HEAD" "git -C $R diff --name-only main...HEAD" \
  -n "gatekeeper ci --base main" "$GK -C $R ci --base main"
python3 - "$WORK/ci.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
git = r["git diff --name-only main...HEAD"]["median"]; gk = r["gatekeeper ci --base main"]["median"]
print(f"git diff --name-only: median {git*1000:.1f} ms; gatekeeper ci: median {gk*1000:.1f} ms; ratio {gk/git:.2f}x")
PY
