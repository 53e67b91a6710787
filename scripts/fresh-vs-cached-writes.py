#!/usr/bin/env python3
"""How much more it costs to write a new file than to write over a file's cached pages.

The snapshot store keeps the last pruned snapshot's file as a spare for the next save to
write over (crates/storage/src/snapshot.rs). This measures why, on the machine at hand:
100 MiB in 1 MiB pwrites (then fdatasync) into a new file, with the previous one deleted,
against the same writes over an existing file, each after a pause (default 8 s, about a
snapshot's interval under load). Usage: scripts/fresh-vs-cached-writes.py [DIR] [PAUSE_S]
"""
import os
import sys
import tempfile
import time

MIB = 1 << 20
TOTAL = 100


def write(path, flags):
    """Milliseconds to write TOTAL MiB into `path` (opened with `flags`), before the sync."""
    buf = os.urandom(MIB)
    fd = os.open(path, flags, 0o644)
    t = time.perf_counter()
    for i in range(TOTAL):
        os.pwrite(fd, buf, i * MIB)
    took = (time.perf_counter() - t) * 1e3
    os.fdatasync(fd)
    os.close(fd)
    return took


def main():
    base = sys.argv[1] if len(sys.argv) > 1 else None
    pause = float(sys.argv[2]) if len(sys.argv) > 2 else 8.0
    with tempfile.TemporaryDirectory(dir=base) as d:
        over = os.path.join(d, "over")
        write(over, os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
        for _ in range(3):
            time.sleep(pause)
            print(f"write over a cached file: {write(over, os.O_WRONLY):.0f} ms per {TOTAL} MiB")
        os.unlink(over)
        for r in range(3):
            time.sleep(pause)
            new = os.path.join(d, f"new{r}")
            took = write(new, os.O_CREAT | os.O_WRONLY | os.O_TRUNC)
            print(f"write a new file:         {took:.0f} ms per {TOTAL} MiB")
            os.unlink(new)


if __name__ == "__main__":
    main()
