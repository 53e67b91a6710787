#!/usr/bin/env python3
"""Turns scripts/bench-vs-etcd's results.jsonl into a Markdown table and an SVG plot
(no dependencies beyond the standard library)."""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
out = sys.argv[2]
by = {(r["system"], r["op"], r["clients"]): r for r in rows}
clients = sorted({r["clients"] for r in rows})

lines = [
    "| op | clients | etcd ops/s | flotilla ops/s | ratio | etcd p50 ms | flotilla p50 ms | etcd p99 ms | flotilla p99 ms | etcd RSS MiB | flotilla RSS MiB |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
]
for op in ("put", "get"):
    for c in clients:
        e, f = by.get(("etcd", op, c)), by.get(("flotilla", op, c))
        if not e or not f:
            continue
        lines.append(
            f"| {op} | {c} | {e['throughput']:.0f} | {f['throughput']:.0f} | {f['throughput'] / max(e['throughput'], 1e-9):.2f}x "
            f"| {e['p50_ms']:.3f} | {f['p50_ms']:.3f} | {e['p99_ms']:.3f} | {f['p99_ms']:.3f} "
            f"| {e['rss_kb'] / 1024:.0f} | {f['rss_kb'] / 1024:.0f} |"
        )
# CPU per operation (when the run recorded it): the members' CPU and the load generator's.
if all("server_cpu_s" in r for r in rows):
    lines += [
        "",
        "| op | clients | etcd members CPU µs/op | flotilla members CPU µs/op | ratio | load generator CPU µs/op (etcd run / flotilla run) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    per_op = lambda r, k: 1e6 * r[k] / max(r["ops"], 1)
    for op in ("put", "get"):
        for c in clients:
            e, f = by.get(("etcd", op, c)), by.get(("flotilla", op, c))
            if not e or not f:
                continue
            es, fs = per_op(e, "server_cpu_s"), per_op(f, "server_cpu_s")
            lines.append(
                f"| {op} | {c} | {es:.0f} | {fs:.0f} | {fs / max(es, 1e-9):.2f}x "
                f"| {per_op(e, 'client_cpu_s'):.0f} / {per_op(f, 'client_cpu_s'):.0f} |"
            )
# Single-client put latency by the role of the member the client talks to.
try:
    roles = [json.loads(l) for l in open(f"{out}/roles.jsonl") if l.strip()]
except FileNotFoundError:
    roles = []
if roles:
    lines += [
        "",
        "| 1 client, puts to | etcd p50 ms | flotilla p50 ms | ratio | etcd p99 ms | flotilla p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for role in ("leader", "follower"):
        pick = lambda sys, k: [r[k] for r in roles if r["system"] == sys and r["role"] == role]
        e50, f50 = pick("etcd", "p50_ms"), pick("flotilla", "p50_ms")
        if not e50 or not f50:
            continue
        mean = lambda xs: sum(xs) / len(xs)
        e99, f99 = pick("etcd", "p99_ms"), pick("flotilla", "p99_ms")
        lines.append(
            f"| the {role} ({len(e50)} / {len(f50)} members) | {mean(e50):.3f} | {mean(f50):.3f} "
            f"| {mean(f50) / mean(e50):.2f}x | {mean(e99):.3f} | {mean(f99):.3f} |"
        )
# Single-client put latency at the leaders, in alternating pairs: each pair's ratio, and
# their median (the figure to quote: single runs swing with the machine's noise).
try:
    pairs = [json.loads(l) for l in open(f"{out}/pairs.jsonl") if l.strip()]
except FileNotFoundError:
    pairs = []
if pairs:
    lines += [
        "",
        "| 1 client at the leader, pair | etcd p50 ms | flotilla p50 ms | ratio |",
        "|---|---:|---:|---:|",
    ]
    ratios = []
    for n in sorted({r["pair"] for r in pairs}):
        e = [r for r in pairs if r["pair"] == n and r["system"] == "etcd"]
        f = [r for r in pairs if r["pair"] == n and r["system"] == "flotilla"]
        if not e or not f:
            continue
        ratio = f[0]["p50_ms"] / max(e[0]["p50_ms"], 1e-9)
        ratios.append(ratio)
        lines.append(f"| {n} | {e[0]['p50_ms']:.3f} | {f[0]['p50_ms']:.3f} | {ratio:.2f}x |")
    if ratios:
        s = sorted(ratios)
        median = (s[(len(s) - 1) // 2] + s[len(s) // 2]) / 2
        lines.append(f"| median of {len(s)} (range {s[0]:.2f}x to {s[-1]:.2f}x) | | | **{median:.2f}x** |")
# Resident memory of every member after the same puts into each fresh cluster.
try:
    mem = {r["system"]: r for r in (json.loads(l) for l in open(f"{out}/memory.jsonl") if l.strip())}
except FileNotFoundError:
    mem = {}
if "etcd" in mem and "flotilla" in mem:
    e, f = mem["etcd"], mem["flotilla"]
    mib = lambda r: " / ".join(f"{k / 1024:.0f}" for k in r["rss_kb"])
    lines += [
        "",
        "| after the same puts | etcd RSS MiB per member | flotilla RSS MiB per member | ratio (largest) |",
        "|---|---:|---:|---:|",
        f"| {f['ops']:,} puts of 256 B over 10,000 keys | {mib(e)} | {mib(f)} "
        f"| {max(f['rss_kb']) / max(max(e['rss_kb']), 1):.2f}x |",
    ]
open(f"{out}/table.md", "w").write("\n".join(lines) + "\n")

# A grouped bar chart of throughput: for each op and client count, etcd and flotilla.
groups = [(op, c) for op in ("put", "get") for c in clients]
W, H, pad = 900, 360, 50
peak = max([r["throughput"] for r in rows] + [1])
bw = (W - 2 * pad) / (len(groups) * 3)
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
       f'<text x="{W/2}" y="18" text-anchor="middle" font-size="14">Throughput (ops/s), 256-byte values, 3 members, fsync on</text>']
for i, (op, c) in enumerate(groups):
    x0 = pad + i * 3 * bw
    for j, (sys, color) in enumerate((("etcd", "#4a7ebb"), ("flotilla", "#d9822b"))):
        r = by.get((sys, op, c))
        if not r:
            continue
        h = (H - 2 * pad) * r["throughput"] / peak
        svg.append(f'<rect x="{x0 + j * bw:.1f}" y="{H - pad - h:.1f}" width="{bw * 0.9:.1f}" height="{h:.1f}" fill="{color}"/>')
    svg.append(f'<text x="{x0 + bw:.1f}" y="{H - pad + 14}" text-anchor="middle">{op} {c}</text>')
svg.append(f'<rect x="{W - 170}" y="30" width="10" height="10" fill="#4a7ebb"/><text x="{W - 155}" y="39">etcd</text>')
svg.append(f'<rect x="{W - 100}" y="30" width="10" height="10" fill="#d9822b"/><text x="{W - 85}" y="39">flotilla</text>')
svg.append("</svg>")
open(f"{out}/bench-vs-etcd.svg", "w").write("\n".join(svg) + "\n")
