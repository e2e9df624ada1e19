#!/usr/bin/env python3
"""Writes a git fast-import stream for a repository of N files in folders of 100 (src/dNNN/fNN.txt).

  gen_repo.py N | git fast-import --quiet
"""
import sys

def main():
    n = int(sys.argv[1])
    out = sys.stdout.buffer
    out.write(b"commit refs/heads/main\ncommitter bench <bench@example.invalid> 1700000000 +0000\n")
    msg = f"base: {n} files".encode()
    out.write(b"data %d\n%s\n" % (len(msg), msg))
    for i in range(n):
        data = f"file {i}\nline two\n".encode()
        out.write(b"M 100644 inline src/d%03d/f%02d.txt\ndata %d\n%s\n" % (i // 100, i % 100, len(data), data))
    cfg = b"version: 1\n"
    out.write(b"M 100644 inline gatekeeper.yaml\ndata %d\n%s\n" % (len(cfg), cfg))

if __name__ == "__main__":
    main()
