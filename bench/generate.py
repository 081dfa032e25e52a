#!/usr/bin/env python3
"""Generate a synthetic fleet inventory in flux-inputs' seed format.

    bench/generate.py --clusters 10000 --components 200 --per-cluster 30 \
                      --namespaces 10 --rolebindings 5 > seed.json

Deterministic: the same flags give the same file. Each cluster gets `--per-cluster` catalog
components (every 5th with a tag override, every 7th with a path override, every 3rd with a
Helm value patch), `--namespaces` namespaces and `--rolebindings` rolebindings drawn from
catalogs five and four times that size. Catalog components depend on their predecessor in
chains of four, and every cluster gets whole chains, so no dependency is left unassigned
(and only a chain's last component is ever disabled).
`--everywhere` adds a component assigned to every cluster (the fleet-wide catalog edit).
`--overlays N` labels every cluster `half=a|b` and adds N overlays (README, "Overlays"): the
first, `half-a`, pins fleet-agent's tag on half the fleet; each other one matches every
cluster and sets a Helm value of fleet-agent (needs `--everywhere`).

The mix holds what real inventories hold and Kubernetes is strict about: every 4th cluster
has a free-text name ("Edge Store 042 (Berlin)"), every 6th component a version with SemVer
build metadata ("v1.3.2+rke2r1"), every 10th comes from an HTTPS Helm repository (its tag
with a "+build" suffix), and every 50th has an id of 53 characters, the longest a Helm
release name may be.
"""
import argparse
import json
import random
import sys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clusters", type=int, default=10_000)
    parser.add_argument("--components", type=int, default=200)
    parser.add_argument("--per-cluster", type=int, default=30)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--rolebindings", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--everywhere", action="store_true",
                        help="add component 'fleet-agent', assigned (enabled) to every cluster")
    parser.add_argument("--overlays", type=int, default=None,
                        help="label clusters half=a|b and add this many overlays of fleet-agent")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    envs = ["dev", "qa", "uat", "prod"]

    def component_id(i: int) -> str:
        base = f"component-{i:03d}"
        return (base + "-with-a-long-descriptive-name-" + "x" * 53)[:53] if i % 50 == 7 else base

    def component(i: int) -> dict:
        version = f"1.{i % 17}.{i % 5}"
        https = i % 10 == 9
        return {
            "id": component_id(i),
            "component_path": f"component-{i:03d}" if https else f"charts/component-{i:03d}",
            "component_version": f"v{version}+rke2r1" if i % 6 == 5 else version,
            "oci_url": "https://charts.example.com/platform" if https
            else f"oci://registry.example.com/platform/component-{i:03d}",
            "oci_tag": f"{version}+build.{i % 3}" if https else version,
            "depends_on": [component_id(i - 1)] if i % 4 else [],
            "cluster_env_enabled": i % 3 == 0 and not https,
        }

    cities = ["Berlin", "Lyon", "Porto", "Turku", "Brno", "Graz", "Gent"]
    components = [component(i) for i in range(args.components)]
    if args.everywhere:
        components.append({
            "id": "fleet-agent", "component_path": "charts/fleet-agent", "component_version": "1.0.0",
            "oci_url": "oci://registry.example.com/platform/fleet-agent", "oci_tag": "1.0.0",
            "depends_on": [], "cluster_env_enabled": False,
        })
    namespace_pool = args.namespaces * 5
    namespaces = [
        {
            "id": f"ns-{i:03d}",
            "labels": {"app.kubernetes.io/part-of": "platform", "team": f"team-{i % 9}"},
            "annotations": {"platform.example.com/owner": f"owner-{i % 13}@example.com"},
        }
        for i in range(namespace_pool)
    ]
    rolebinding_pool = args.rolebindings * 4
    rolebindings = [
        {
            "id": f"rb-{i:03d}",
            "role": ["view", "edit", "admin"][i % 3],
            "subjects": [
                {"kind": "Group", "name": f"group-{i}", "apiGroup": "rbac.authorization.k8s.io"},
                {"kind": "ServiceAccount", "name": f"deployer-{i}", "namespace": "ci"},
            ],
        }
        for i in range(rolebinding_pool)
    ]
    chains = args.components // 4
    clusters = []
    for c in range(args.clusters):
        chosen = sorted(rng.sample(range(chains), min(chains, (args.per_cluster + 3) // 4)))
        ids = [4 * chain + k for chain in chosen for k in range(4)][: args.per_cluster]
        refs, patches = [], {}
        for n, i in enumerate(ids):
            refs.append({
                "id": component_id(i),
                # Only a chain's last component is ever disabled: nothing enabled waits on it.
                "enabled": not (i % 4 == 3 and n % 3 == 2),
                "oci_tag": f"2.{c % 7}.{n}" if n % 5 == 0 else None,
                "component_path": f"custom/component-{i:03d}" if n % 7 == 0 else None,
            })
            if n % 3 == 0:
                patches[component_id(i)] = {"replicaCount": 1 + c % 3, "resources.limits.memory": "256Mi"}
        if args.everywhere:
            refs.append({"id": "fleet-agent", "enabled": True, "oci_tag": None, "component_path": None})
        labels = {"half": "ab"[c % 2]} if args.overlays is not None else {}
        clusters.append({
            "id": f"cluster-{c:06d}",
            "labels": labels,
            "cluster_name": f"Edge Store {c:03d} ({cities[c % 7]})" if c % 4 == 1 else f"cluster-{c:06d}",
            "cluster_dns": f"cluster-{c:06d}.fleet.example.com",
            "environment": envs[c % 4],
            "node_count": 1 + c % 5,
            "platform_components": refs,
            "namespaces": [{"id": f"ns-{i:03d}"} for i in sorted(rng.sample(range(namespace_pool), args.namespaces))],
            "rolebindings": [{"id": f"rb-{i:03d}"} for i in sorted(rng.sample(range(rolebinding_pool), args.rolebindings))],
            "patches": patches,
        })
    document = {"platform_components": components, "namespaces": namespaces, "rolebindings": rolebindings, "clusters": clusters}
    if args.overlays:
        overlays = [{"id": "half-a", "selector": {"labels": {"half": "a"}},
                     "platform_components": [{"id": "fleet-agent", "oci_tag": "1.0.1"}]}]
        overlays += [{"id": f"everyone-{i:02d}", "priority": i,
                      "patches": {"fleet-agent": {f"tuning.layer{i:02d}": i}}}
                     for i in range(1, args.overlays)]
        document["overlays"] = overlays
    sys.stdout.write(json.dumps(document, separators=(",", ":")))


if __name__ == "__main__":
    main()
