#!/usr/bin/env python3
"""The disk's durable-write latency, to read the benchmarks' latency figures against.

2,000 writes of 361 bytes (one 256-byte put's WAL record) at increasing offsets, each
followed by fdatasync, into a 64 MiB file prepared three ways: written with zeros,
fallocate(2)d (as Flotilla's and etcd's WAL segments are), and growing. Prints the p50 of
each, three rounds. Usage: scripts/fsync-latency.py [directory] (default: /tmp).
"""
import os
import sys
import time

DIR = sys.argv[1] if len(sys.argv) > 1 else "/tmp"


def p50(mode):
    path = os.path.join(DIR, "fsync-latency.%d" % os.getpid())
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    try:
        if mode == "zeros":
            os.write(fd, b"\0" * (64 << 20))
            os.fsync(fd)
        elif mode == "fallocate":
            os.posix_fallocate(fd, 0, 64 << 20)
            os.fsync(fd)
        took = []
        for i in range(2000):
            t = time.perf_counter()
            os.pwrite(fd, b"y" * 361, i * 361)
            os.fdatasync(fd)
            took.append(time.perf_counter() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    took.sort()
    return took[len(took) // 2] * 1e6


for _ in range(3):
    print("  ".join("%s %.0f us" % (m, p50(m)) for m in ("zeros", "fallocate", "growing")))
