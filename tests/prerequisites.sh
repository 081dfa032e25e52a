#!/usr/bin/env bash
# Installs what the tests drive besides cargo, from Debian's packages, when missing: curl
# (TLS tests), systemd-analyze (the unit), Go with sprig and sigs.k8s.io/yaml (the example
# ResourceSets rendered as Flux Operator renders them, tests/render/render.go). Run as root.
set -euo pipefail
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v go >/dev/null || missing+=(golang-go)
[ -d /usr/share/gocode/src/github.com/Masterminds/sprig ] || missing+=(golang-github-masterminds-sprig-dev)
[ -d /usr/share/gocode/src/sigs.k8s.io/yaml ] || missing+=(golang-k8s-sigs-yaml-dev)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
