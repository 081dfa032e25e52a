#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only; every request goes to 127.0.0.1).

    measure.py rss CMD...                      run CMD; print "<seconds> <peak RSS KiB>"
    measure.py tokens DB DNS_FILE              give every cluster a scoped token "tok-<dns>"
    measure.py edits PORT TOKEN COMPONENT CLUSTER_ID [N]
        N catalog edits of COMPONENT (a new oci_tag each), each with a PUT of CLUSTER_ID sent
        50 ms into it; print "<p50 ms> <p99 ms> <edit statuses> <concurrent statuses>"
    measure.py rollout PORT TOKEN COMPONENT
        a rollout of COMPONENT to a new oci_tag, one wave per environment, gate "polled",
        no bake; every cluster of a step polls once its step started (as Flux would); print
        "<plan ms> <GET /rollouts/{id} ms> <start to succeeded s> <final state>"
    measure.py lag HUB_PORT REPLICA_PORT TOKEN COMPONENT CLUSTER_DNS [N]
        N catalog edits of COMPONENT on the hub, one at a time, each followed until the
        replica's feed of CLUSTER_DNS shows it; print "<median s> <max s>"
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


def overlay_edits(port, token, overlay, component, count):
    """Tag edits of one overlay's entry, one after the other: p50 and p99 in ms, the statuses,
    and the size of a dry run's answer and the clusters it counts."""
    port = int(port)
    times, statuses = [], []
    for i in range(int(count)):
        body = {"platform_components": [{"id": component, "oci_tag": f"1.{i + 2}.{int(time.time())}"}]}
        status, took = put(port, token, f"/overlays/{overlay}", body)
        times.append(took * 1000)
        statuses.append(status)
    body = {"platform_components": [{"id": component, "oci_tag": "9.9.9"}]}
    status, answer = call(port, token, "PUT", f"/overlays/{overlay}?dry_run=true", body)
    changed = json.loads(answer)["clusters_changed"] if status == 202 else f"status-{status}"
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    summary = ",".join(f"{s}x{statuses.count(s)}" for s in sorted(set(statuses)))
    print(f"{statistics.median(times):.0f} {p99:.0f} {summary} {len(answer)} {changed}")


def call(port, token, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn.request(method, path, json.dumps(body) if body is not None else None, headers)
    response = conn.getresponse()
    return response.status, response.read()


def poll_feeds(port, token, names):
    """Each cluster's platform-components feed once, 16 at a time."""
    names = list(names)
    def worker(part):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for dns in part:
            conn.request("GET", f"/api/v2/flux/clusters/{dns}/platform-components", None,
                         {"Authorization": f"Bearer {token}"})
            conn.getresponse().read()
    threads = [threading.Thread(target=worker, args=(names[i::16],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def rollout(port, token, component):
    port = int(port)
    clusters = json.loads(call(port, token, "GET", "/clusters")[1])
    poll_feeds(port, token, (c["cluster_dns"] for c in clusters))
    spec = {"id": f"bench-{int(time.time())}", "component": component,
            "target": {"oci_tag": f"9.9.{int(time.time())}"},
            "waves": [{"environment": e} for e in ("dev", "qa", "uat", "prod")],
            "gate": "polled", "bake_seconds": 0, "wave_timeout_seconds": 3600}
    started = time.monotonic()
    status, _ = call(port, token, "POST", "/rollouts?dry_run=true", spec)
    plan_ms = (time.monotonic() - started) * 1000
    assert status == 200, status
    assert call(port, token, "POST", "/rollouts", spec)[0] == 201
    path = f"/rollouts/{spec['id']}"
    started = time.monotonic()
    call(port, token, "GET", path)
    get_ms = (time.monotonic() - started) * 1000
    started = time.monotonic()
    call(port, token, "POST", path + "/start")
    polled = set()
    while True:
        current = json.loads(call(port, token, "GET", path)[1])
        if current["state"] != "running":
            break
        step = current["steps"][current.get("current_step", 0)]
        if step["state"] == "waiting" and step["step"] not in polled:
            time.sleep(1.05)  # poll times have whole seconds
            poll_feeds(port, token, (c["cluster_dns"] for c in step["clusters"]))
            polled.add(step["step"])
        time.sleep(0.1)
    took = time.monotonic() - started
    print(f"{plan_ms:.0f} {get_ms:.0f} {took:.1f} {current['state']}")


def lag(hub_port, replica_port, token, component, cluster_dns, count=20):
    hub_port, replica_port = int(hub_port), int(replica_port)
    path = f"/api/v2/flux/clusters/{cluster_dns}/platform-components"
    lags = []
    for i in range(int(count)):
        tag = f"lag-{i}-{int(time.time())}"
        status, _ = call(hub_port, token, "PUT", f"/platform_components/{component}", {"oci_tag": tag})
        assert status == 200, status
        written = time.monotonic()
        while True:
            status, body = call(replica_port, token, "GET", path)
            inputs = json.loads(body)["inputs"] if status == 200 else []
            if any(i["id"] == component and i["source"]["oci_tag"] == tag for i in inputs):
                break
            if time.monotonic() - written > 120:
                raise SystemExit(f"edit {i} not on the replica after 120 s")
            time.sleep(0.02)
        lags.append(time.monotonic() - written)
    print(f"{statistics.median(lags):.2f} {max(lags):.2f}")


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"rss": lambda: rss(args), "tokens": lambda: tokens(*args), "edits": lambda: edits(*args),
     "rollout": lambda: rollout(*args), "lag": lambda: lag(*args),
     "overlay-edits": lambda: overlay_edits(*args)}[command]()
