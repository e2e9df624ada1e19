#!/usr/bin/env python3
"""Grows gatekeeper ledgers for benchmarks, keeping the journal chain valid.

  gen_ledgers.py lines REPO TASK N    append N journal lines to TASK's journal (and move the head)
  gen_ledgers.py copies REPO TASK N   write N more ledgers t0000..tN-1 whose journals copy TASK's
                                      (journals only: enough for `gatekeeper status`)
Lines are canonical JSON (sorted keys, no spaces), as gatekeeper writes them.
"""
import hashlib, json, os, sys

def canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()

def read(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(l) for l in f.read().splitlines()]

def write_chain(path, entries, task, head_path=None):
    prev = None
    out = []
    for i, e in enumerate(entries):
        e = dict(e, seq=i, prev=prev, task=task)
        line = canon(e)
        prev = sha(line)
        out.append(line)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")
    if head_path:
        os.makedirs(os.path.dirname(head_path), exist_ok=True)
        with open(head_path, "w") as f:
            f.write(f"{len(out) - 1} {prev}\n")

def main():
    mode, repo, task, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    journal = os.path.join(repo, ".ai-stack-trace", task, "ledger.jsonl")
    entries = read(journal)
    if mode == "lines":
        last = entries[-1]
        for i in range(n):
            entries.append(dict(last, event="benchmark_note", step=None, files={}, data={"n": i}))
        write_chain(journal, entries, task, os.path.join(repo, ".git", "gatekeeper", "heads", task))
    elif mode == "copies":
        for i in range(n):
            name = f"t{i:04d}"
            write_chain(os.path.join(repo, ".ai-stack-trace", name, "ledger.jsonl"), entries, name)
    else:
        sys.exit(f"unknown mode {mode}")

if __name__ == "__main__":
    main()
