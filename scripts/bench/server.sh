#!/usr/bin/env bash
# SPEC §12 targets for the task API server, measured on release builds, loopback only, bounded:
#   GET /api/tasks/{id}, 1,000 tasks, audit on, 64 connections   (≥ 60 % of a bare axum handler
#                                                                 returning the same bytes; p99 ≤ 3 ms)
#   GET /api/tasks?limit=100, 64 connections                      (p99 ≤ 10 ms)
#   SSE fan-out: 1,000 clients, 200 changes                       (0 disconnects, delivery p95 ≤ 25 ms)
#   peak memory of `serve` with 1,000 tasks and 1,000 SSE clients (≤ 150 MiB)
# The bare handler is `gatekeeper serve --bare-bench FILE` (hidden flag), measured in the same run.
# Load: wrk from Debian's packages (installed here when missing), 2 threads, DURATION seconds each.
# Usage: scripts/bench/server.sh [DURATION]   (default 10 s per wrk run; results on stdout)
set -euo pipefail
cd "$(dirname "$0")/../.."
DURATION=${1:-10}
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq wrk >/dev/null
fi
cargo build --release -q
GK="$PWD/target/release/gatekeeper"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n 20000 2>/dev/null || true

# 1,000 tasks written straight into ssot/ (the record format of SPEC §8.1).
python3 - "$WORK/root/ssot" <<'PY'
import json, os, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
for i in range(1000):
    tid = f"task-{i:04d}"
    at = f"2026-01-01T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000Z"
    rec = {
        "task_id": tid, "source": "api", "correlation_id": f"corr-{tid}",
        "created_at": at, "updated_at": at, "version": 1,
        "request_text": f"Benchmark task {i}: change the greeting and keep the tests green.",
        "acceptance_criteria": [{"id": "AC-1", "text": "the greeting says hello"},
                                {"id": "AC-2", "text": "the tests pass"}],
        "declared_scope": ["src/greeting.txt", "tests/**"],
        "decision": None,
        "history": [{"at": at, "event": "created", "by": "admin", "version": 1}],
        "ci_status": None, "pipeline": None,
    }
    with open(os.path.join(d, tid + ".json"), "w") as f:
        json.dump(rec, f, sort_keys=True, indent=2)
PY

# Starts a server and sets URL and PID; its first stdout line is `listening on http://HOST:PORT`.
start() {
  local out="$WORK/$1.out"; shift
  GATEKEEPER_ADMIN_TOKEN=bench-token "$GK" serve --addr 127.0.0.1:0 "$@" >"$out" 2>"$out.err" &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 1 100); do grep -q '^listening on ' "$out" 2>/dev/null && break; sleep 0.1; done
  URL=$(sed -n 's/^listening on \(http:\/\/[^ ]*\).*/\1/p' "$out" | head -1)
}
start real --root "$WORK/root"
REAL=$URL
REAL_PID=$PID
curl -sf "$REAL/api/tasks/task-0500" -o "$WORK/body.json"
start bare --bare-bench "$WORK/body.json"
BARE=$URL
cmp <(curl -sf "$BARE/api/tasks/task-0500") "$WORK/body.json"

# wrk: requests/s and latency percentiles.
bench() {
  local name=$1 url=$2
  wrk -t2 -c64 -d2s "$url" >/dev/null 2>&1 # warm-up
  wrk -t2 -c64 -d"${DURATION}s" --latency "$url" >"$WORK/$name.wrk"
  local rps p50 p99
  rps=$(awk '/^Requests\/sec/ {print $2}' "$WORK/$name.wrk")
  p50=$(awk '$1 == "50%" {print $2}' "$WORK/$name.wrk")
  p99=$(awk '$1 == "99%" {print $2}' "$WORK/$name.wrk")
  echo "$name|$rps|$p50|$p99"
}
echo "## wrk -t2 -c64 -d${DURATION}s (loopback), bare and real interleaved, 3 rounds"
echo "target|requests/s|p50|p99"
RATIOS=()
for round in 1 2 3; do
  B=$(bench "bare-$round" "$BARE/api/tasks/task-0500"); echo "$B"
  R=$(bench "real-$round" "$REAL/api/tasks/task-0500"); echo "$R"
  RATIOS+=("$(python3 -c "import sys; print(round(float('${R}'.split('|')[1]) / float('${B}'.split('|')[1]), 3))")")
done
echo "real/bare throughput per round: ${RATIOS[*]} (median $(printf '%s\n' "${RATIOS[@]}" | sort -n | sed -n 2p))"
L=$(bench list "$REAL/api/tasks?limit=100"); echo "$L"
AUDIT_LINES=$(wc -l <"$WORK/root/audit/events.jsonl")
echo "audit lines written during the run: $AUDIT_LINES"

# SSE fan-out through verify-phase b against the same server (its report goes to $WORK).
echo "## SSE fan-out: 1,000 clients, 200 changes"
GATEKEEPER_ADMIN_TOKEN=bench-token "$GK" verify-phase b --url "$REAL" --clients 1000 --changes 200 \
  --duration 60 --out "$WORK/reports" | grep -E 'sse_|phase' || true
echo "## peak memory of serve (VmHWM, 1,000 tasks, after 1,000 SSE clients)"
grep VmHWM "/proc/$REAL_PID/status"
