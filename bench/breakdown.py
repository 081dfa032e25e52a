#!/usr/bin/env python3
"""Where a request's time goes, from `perf script` output of a profile with call graphs.

    cargo build --profile profiling
    # start target/profiling/flux-inputs, load it with wrk (bench/rotate.lua), then:
    perf record -F 400 --call-graph dwarf,16384 -p <pid> -o feed.data -- sleep 5
    perf script -i feed.data | bench/breakdown.py

Each sample counts for the first frame, from the leaf up, that belongs to a part of the
request path; a leaf in libc (memcpy, malloc) counts for the code that called it.
"""
import collections
import re
import sys

PARTS = [
    ("kernel: TCP send/receive, scheduling, syscalls", lambda f, dso: "kernel.kallsyms" in dso),
    ("feed body assembled from cached fragments",
     lambda f, dso: "ClusterRefs" in f or "feed_cache" in f),
    ("hyper: body copied into its write buffer", lambda f, dso: "WriteBuf" in f),
    ("poll recorded (PollTracker)", lambda f, dso: "PollTracker" in f),
    ("authentication", lambda f, dso: "flux_inputs::auth" in f),
    ("request metrics, request id, access log",
     lambda f, dso: any(k in f for k in ("observe", "metrics", "request_id", "tracing"))),
    ("the short way (api::short_way)", lambda f, dso: "short_way" in f),
    ("hyper: HTTP/1 parse and encode", lambda f, dso: f.startswith("hyper::") or "<hyper::" in f),
    ("poem: routing, middleware, extractors", lambda f, dso: "poem" in f),
    ("tokio: runtime and I/O", lambda f, dso: "tokio::" in f),
]

counts = collections.Counter()
total = 0
frames = []


def count():
    if not frames:
        return
    for frame, dso in frames:
        for part, belongs in PARTS:
            if belongs(frame, dso):
                counts[part] += 1
                return
    counts["other (allocator, libc, unresolved)"] += 1


for line in sys.stdin:
    if not line.strip():
        count()
        frames = []
    elif not line.startswith((" ", "\t")):
        total += 1
        frames = []
    elif m := re.match(r"\s*[0-9a-f]+ (.*?) \((.*)\)$", line.rstrip()):
        frames.append((m.group(1), m.group(2)))
count()
print("| part of the request path | share of samples |\n|---|---|")
for part, n in counts.most_common():
    print(f"| {part} | {100 * n / max(total, 1):.1f} % |")
print(f"\n{total} samples")
