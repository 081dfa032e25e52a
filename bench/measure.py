#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only; every request goes to 127.0.0.1).

    measure.py rss CMD...                      run CMD; print "<seconds> <peak RSS KiB>"
    measure.py tokens DB DNS_FILE              give every cluster a scoped token "tok-<dns>"
    measure.py edits PORT TOKEN COMPONENT CLUSTER_ID [N]
        N catalog edits of COMPONENT (a new oci_tag each), each with a PUT of CLUSTER_ID sent
        50 ms into it; print "<p50 ms> <p99 ms> <edit statuses> <concurrent statuses>"
"""
import hashlib
import http.client
import json
import resource
import sqlite3
import statistics
import subprocess
import sys
import threading
import time


def rss(command):
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    took = time.monotonic() - started
    print(f"{took:.2f} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}")


def tokens(database, dns_file):
    conn = sqlite3.connect(database)
    with open(dns_file) as names:
        rows = []
        for dns in (line.strip() for line in names if line.strip()):
            cluster = dns.split(".")[0]
            digest = hashlib.sha256(f"tok-{dns}".encode()).hexdigest()
            rows.append((cluster, digest, cluster, int(time.time())))
    conn.executemany(
        "INSERT OR REPLACE INTO api_tokens (name, token_sha256, scope_cluster_id, created_at) VALUES (?, ?, ?, ?)",
        rows,
    )
    conn.execute("UPDATE inventory_revision SET revision = revision + 1")
    conn.commit()


def put(port, token, path, body):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    started = time.monotonic()
    conn.request("PUT", path, json.dumps(body), {"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    status = conn.getresponse().status
    return status, time.monotonic() - started


def edits(port, token, component, cluster, count):
    port = int(port)
    times, edit_statuses, concurrent_statuses = [], [], []
    for i in range(int(count)):
        side = {}
        def concurrent():
            time.sleep(0.05)
            side["status"], _ = put(port, token, f"/clusters/{cluster}", {"node_count": i})
        thread = threading.Thread(target=concurrent)
        thread.start()
        status, took = put(port, token, f"/platform_components/{component}", {"oci_tag": f"9.{i}.{int(time.time())}"})
        thread.join()
        times.append(took * 1000)
        edit_statuses.append(status)
        concurrent_statuses.append(side.get("status", 0))
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    summary = lambda statuses: ",".join(f"{s}x{statuses.count(s)}" for s in sorted(set(statuses)))
    print(f"{statistics.median(times):.0f} {p99:.0f} {summary(edit_statuses)} {summary(concurrent_statuses)}")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"rss": lambda: rss(args), "tokens": lambda: tokens(*args), "edits": lambda: edits(*args)}[command]()
