#!/usr/bin/env bash
# SPEC §12 targets for the pipeline, measured with hyperfine on release builds, all local:
#   `gatekeeper run` of all 9 steps with stand-ins and a trivial check   (target ≤ 300 ms)
#   `gatekeeper verify` of a ledger with 10,000 journal lines            (target ≤ 150 ms)
#   `gatekeeper status` over 1,000 task ledgers                          (target ≤ 200 ms)
# Usage: scripts/bench/pipeline.sh [RUNS]   (default 20 runs each; results on stdout)
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-20}
if ! command -v hyperfine >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null
fi
cargo build --release -q
GK="$PWD/target/release/gatekeeper"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# 1. `run`: the demo repository, reset to its base before each run.
"$GK" demo "$WORK/run" >/dev/null 2>&1
BASE=$(git -C "$WORK/run" rev-list --max-parents=0 HEAD)
cp "$WORK/run/docs/ai-gated/prompt/greeting.md" "$WORK/prompt.md"
PREP="git -C $WORK/run reset -q --hard $BASE && rm -rf $WORK/run/.ai-stack-trace $WORK/run/.git/gatekeeper && mkdir -p $WORK/run/docs/ai-gated/prompt && cp $WORK/prompt.md $WORK/run/docs/ai-gated/prompt/greeting.md"

# 2. `verify`: a finished demo ledger grown to 10,000 journal lines.
"$GK" demo "$WORK/verify" >/dev/null 2>&1
LINES=$(wc -l < "$WORK/verify/.ai-stack-trace/greeting/ledger.jsonl")
python3 scripts/bench/gen_ledgers.py lines "$WORK/verify" greeting $((10000 - LINES))
"$GK" -C "$WORK/verify" verify greeting >/dev/null

# 3. `status`: 1,000 ledgers.
"$GK" demo "$WORK/status" >/dev/null 2>&1
python3 scripts/bench/gen_ledgers.py copies "$WORK/status" greeting 999

hyperfine --warmup 3 --runs "$RUNS" --export-json "$WORK/run.json" --prepare "$PREP" \
  -n "run (9 stand-in steps)" "$GK -C $WORK/run run greeting"
hyperfine --warmup 3 --runs "$RUNS" --export-json "$WORK/verify.json" \
  -n "verify (10,000 journal lines)" "$GK -C $WORK/verify verify greeting"
hyperfine --warmup 3 --runs "$RUNS" --export-json "$WORK/status.json" \
  -n "status (1,000 ledgers)" "$GK -C $WORK/status status"
for f in run verify status; do
  python3 -c "import json,sys; r=json.load(open('$WORK/$f.json'))['results'][0]; print(f\"{r['command']}: median {r['median']*1000:.1f} ms, min {r['min']*1000:.1f} ms, max {r['max']*1000:.1f} ms\")"
done
