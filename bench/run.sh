#!/usr/bin/env bash
# The benchmark: generate inventories, import them, start the release binary, load it with
# wrk on 127.0.0.1, print one table. Every process it starts is stopped on exit.
#
#   bench/run.sh [--clusters N] [--small N] [--large N] [--duration SECONDS] [--connections N]
#                [--only overlays]
#
# Defaults: 10,000 clusters for the main table, 1,000 and 100,000 for the p99 scaling check
# and the import, 100,000 for the large fleet's table (serving RSS, /metrics, /status/fleet,
# console pages, catalog edits), 10 s per wrk run, wrk -t1 -c64, after a warm-up that loads every cluster
# into the feed cache once. Also: catalog edits of a component on every cluster with a
# concurrent writer, events from every cluster (as fast as taken, and feeds with events at
# 200/s against feeds alone), feeds with a token per cluster, and overlays (edits of one
# matching half the fleet, feeds with 20 matching every cluster, an import with 50). A full
# run takes about 16 minutes; `--only overlays` runs the overlays part alone (3 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

clusters=10000 small=1000 large=100000 duration=10 connections=64 only=
while [ $# -gt 0 ]; do
    case "$1" in
        --only) only="$2"; shift 2 ;;
        --clusters) clusters="$2"; shift 2 ;;
        --small) small="$2"; shift 2 ;;
        --large) large="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        *) echo "unknown flag $1" >&2; exit 2 ;;
    esac
done

if ! command -v wrk >/dev/null; then
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --quiet --bin flux-inputs --example limit-server
binary="$PWD/target/release/flux-inputs"
limit_server="$PWD/target/release/examples/limit-server"
work="$(mktemp -d)"
token=bench-token
pids=() groups=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for group in "${groups[@]}"; do kill -s TERM -- "-$group" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }

# start DB SEED → sets $pid, $port and $took (seconds from start to /ready)
start() {
    port="$(free_port)"
    local begin; begin="$(now)"
    AUTH_TOKEN="$token" API_MODE="${SERVER_MODE:-crud}" ROLE="${SERVER_ROLE:-standalone}" \
        DATABASE_PATH="$1" SEED_FILE="$2" LISTEN_ADDR="127.0.0.1:$port" \
        RUST_LOG="${SERVER_LOG:-warn}" "$binary" >>"$work/server.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    until curl -sf "http://127.0.0.1:$port/ready" >/dev/null 2>&1; do
        kill -0 "$pid" 2>/dev/null || { echo "server died:"; cat "$work/server.log"; exit 1; }
        sleep 0.01
    done
    took="$(elapsed "$begin" "$(now)")"
}

stop() { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; }

# load FEED [SECONDS] → "req/s p50_ms p99_ms non2xx errors" (PER_CLUSTER=1 in the
# environment: every request with its cluster's own token)
load() {
    DNS_FILE="$work/dns-$size.txt" FEED="$1" TOKEN="$token" \
        wrk -t1 -c"$connections" -d"${2:-$duration}s" -s bench/rotate.lua "http://127.0.0.1:$port" \
        | awk '/^RESULT/ {print $2, $3, $4, $5, $6}'
}

# timed PATH → the median of 5 GETs with the token, in ms; once PATH → one GET, in ms
ms() { python3 -c 'import sys; print(f"{float(sys.stdin.read()) * 1000:.0f}")'; }
once() { curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $token" "http://127.0.0.1:$port$1" | ms; }
timed() {
    for _ in 1 2 3 4 5; do
        curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $token" "http://127.0.0.1:$port$1"
    done | sort -g | sed -n 3p | ms
}
# A catalog edit of fleet-agent (on every cluster): what the fleet's summary counts changed.
after_write() {
    curl -s -o /dev/null -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
        -d "{\"oci_tag\": \"9.9.$RANDOM\"}" "http://127.0.0.1:$port/platform_components/fleet-agent"
}
# The console's pages, signed in with the write token: page_ms PATH → median of 5, in ms.
sign_in() { curl -s -c "$work/console.jar" -o /dev/null -d "token=$token" "http://127.0.0.1:$port/ui/login"; }
page_ms() {
    for _ in 1 2 3 4 5; do
        curl -s -b "$work/console.jar" -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$port$1"
    done | sort -g | sed -n 3p | ms
}

# Overlays (README, "Overlays"), on $clusters clusters labelled half=a|b: feeds with 20
# overlays matching every cluster against the same fleet without overlays (alternated three
# times, medians), tag edits of an overlay matching half the fleet against catalog edits of a
# component on every cluster, a dry run's answer, and an import with 50 overlays.
overlays_part() {
    size="$clusters"
    echo "== $size clusters: overlays" >&2
    python3 bench/generate.py --clusters "$size" --everywhere --overlays 0 >"$work/seed-plain.json"
    python3 bench/generate.py --clusters "$size" --everywhere --overlays 21 >"$work/seed-layered.json"
    python3 bench/generate.py --clusters "$size" --everywhere --overlays 50 >"$work/seed-50.json"
    python3 -c "import json,sys; [print(c['cluster_dns']) for c in json.load(open(sys.argv[1]))['clusters']]" \
        "$work/seed-plain.json" >"$work/dns-$size.txt"
    for seed in plain layered 50; do
        rm -f "$work/ov-$seed.sqlite"
        read -r ov_import_s[$seed] ov_import_kib[$seed] < <(DATABASE_PATH="$work/ov-$seed.sqlite" \
            RUST_LOG=error python3 bench/measure.py rss "$binary" import "$work/seed-$seed.json")
    done
    local plain=() layered=()
    for round in 1 2 3; do
        for seed in plain layered; do
            start "$work/ov-$seed.sqlite" none
            warm
            if [ "$seed" = plain ]; then plain+=("$(load platform-components | cut -d' ' -f1)")
            else layered+=("$(load platform-components | cut -d' ' -f1)"); fi
            stop
        done
    done
    ov_plain="$(median "${plain[@]}")" ov_layered="$(median "${layered[@]}")"
    start "$work/ov-layered.sqlite" none
    read -r ov_edit_p50 ov_edit_p99 ov_edit_status ov_dry_bytes ov_dry_changed < <(python3 bench/measure.py \
        overlay-edits "$port" "$token" half-a fleet-agent 10)
    read -r ov_catalog_p50 ov_catalog_p99 _ _ < <(python3 bench/measure.py edits "$port" "$token" \
        fleet-agent "$(head -1 "$work/dns-$size.txt" | sed 's/\.fleet.*//')" 10)
    stop
    printf '\n| %-60s | %16s |\n' "overlays, $size clusters" "value"
    printf '|%s|%s|\n' "--------------------------------------------------------------" "------------------"
    printf '| %-60s | %16s |\n' \
        "platform-components, no overlays (median of 3)" "$ov_plain req/s" \
        "platform-components, 20 overlays on every cluster (median of 3)" "$ov_layered req/s" \
        "  ratio with overlays / without (target >= 0.95)" "$(python3 -c "print(f'{$ov_layered / $ov_plain:.2f}')")" \
        "overlay edit (tag), overlay matching $((size / 2)): p50 / p99 (10)" "$ov_edit_p50 / $ov_edit_p99 ms" \
        "  its statuses" "$ov_edit_status" \
        "catalog edit, component on all $size: p50 / p99 (10), same run" "$ov_catalog_p50 / $ov_catalog_p99 ms" \
        "  its dry run: answer size; clusters counted" "$ov_dry_bytes bytes; $ov_dry_changed" \
        "flux-inputs import, $size clusters, no overlays: time / peak RSS" "${ov_import_s[plain]} s / $((ov_import_kib[plain] / 1024)) MiB" \
        "flux-inputs import, $size clusters, 50 overlays: time / peak RSS" "${ov_import_s[50]} s / $((ov_import_kib[50] / 1024)) MiB"
}
declare -A ov_import_s ov_import_kib
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }

# `flux-inputs import` into a new database, streamed: seconds and the process's peak RSS.
declare -A import_s import_kib ready_s
[ "$only" = overlays ] || for size in "$small" "$clusters" "$large"; do
    echo "== $size clusters: generate, import, restart" >&2
    python3 bench/generate.py --clusters "$size" --everywhere >"$work/seed-$size.json"
    python3 -c "import json,sys; [print(c['cluster_dns']) for c in json.load(open(sys.argv[1]))['clusters']]" \
        "$work/seed-$size.json" >"$work/dns-$size.txt"
    read -r import_s[$size] import_kib[$size] < <(DATABASE_PATH="$work/db-$size.sqlite" RUST_LOG=error \
        python3 bench/measure.py rss "$binary" import "$work/seed-$size.json")
    start "$work/db-$size.sqlite" none
    ready_s[$size]="$took"
    stop
    # The generated file is only needed for the import.
    rm -f "$work/seed-$size.json"
done

# Warm the feed cache until every cluster was loaded once (the cache's miss counter reaches
# the fleet size), so the measured run sees the steady state; bounded to 60 s, 180 s for
# 100,000 clusters and more.
warm() {
    local deadline=$((SECONDS + (size >= 100000 ? 180 : 60))) misses=0
    while [ "$SECONDS" -lt "$deadline" ]; do
        load platform-components 2 >/dev/null
        misses="$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/metrics" \
            | awk -F' ' '/^flux_inputs_feed_cache_total\{outcome="miss"\}/ {print $2}')"
        [ "${misses:-0}" -ge "$size" ] && return
    done
    echo "warning: warm-up stopped at $misses of $size clusters" >&2
}

if [ "$only" = overlays ]; then
    overlays_part
    exit 0
fi

declare -A result
measure_p99() {
    size="$1"
    start "$work/db-$size.sqlite" none
    warm
    result[$size]="$(load platform-components)"
    stop
}
measure_p99 "$small"

# The large fleet: feeds (p99 above), serving memory, the fleet-wide views and a catalog edit.
size="$large"
echo "== $size clusters: feeds, status, metrics, console, catalog edits" >&2
start "$work/db-$size.sqlite" none
# The first summary after start reads every cluster's states (the warm-up's scrapes would);
# later ones read only what changed.
large_first_summary_ms="$(once /metrics)"
large_kept_rss_kib="$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")"
warm
result[$size]="$(load platform-components)"
large_rss_kib="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
large_metrics_bytes="$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/metrics" | wc -c)"
large_metrics_ms="$(timed /metrics)"
large_fleet_ms="$(timed /status/fleet)"
sign_in
large_console_ms="$(page_ms /ui/) / $(page_ms '/ui/?q=cluster-000042') / $(page_ms /ui/components/fleet-agent)"
large_id="$(head -1 "$work/dns-$size.txt" | sed 's/\.fleet.*//')"
read -r large_edit_p50 large_edit_p99 large_edit_status _ < <(python3 bench/measure.py edits "$port" "$token" \
    fleet-agent "$large_id" 5)
# The first summary after a write is computed afresh; the next ones are kept.
large_fleet_fresh_ms="$(once /status/fleet)"
large_metrics_fresh_ms="$(after_write; once /metrics)"
stop

size="$clusters"
echo "== $size clusters: load" >&2
start "$work/db-$size.sqlite" none
feed_bytes="$(curl -s -H "Authorization: Bearer $token" \
    "http://127.0.0.1:$port/api/v2/flux/clusters/$(head -1 "$work/dns-$size.txt")/platform-components" | wc -c)"
warm
declare -A main limit
for feed in health platform-components namespaces rolebindings clusters; do
    main[$feed]="$(load "$feed")"
done
# The warm-up's /metrics scrapes read the fleet's states: they are kept in this figure.
rss_kib="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
# The limit server (bench/limit_server.rs) with the same wrk runs, in the same run: /health
# and a body the size of the platform-components feed.
serving_port="$port"
port="$(free_port)"
"$limit_server" "127.0.0.1:$port" "$feed_bytes" &
limit_pid=$!
pids+=("$limit_pid")
until curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; do sleep 0.01; done
for feed in health platform-components; do
    limit[$feed]="$(load "$feed")"
done
kill "$limit_pid"
port="$serving_port"
cut -d. -f1 "$work/dns-$size.txt" | sed 's/\.fleet.*//' >"$work/ids.txt"
writes="$(ID_FILE="$work/ids.txt" TOKEN="$token" wrk -t1 -c1 -d5s -s bench/put.lua "http://127.0.0.1:$port" \
    | awk '/^RESULT/ {print $2, $3, $4, $5, $6}')"
echo "== $size clusters: catalog edits of a component on every cluster" >&2
read -r edit_p50 edit_p99 edit_status edit_concurrent < <(python3 bench/measure.py edits "$port" "$token" \
    fleet-agent "$(head -1 "$work/ids.txt")" 10)

# events EXTRA_WRK_ARGS... → the events.lua RESULT line
events() {
    DNS_FILE="$work/dns-$size.txt" TOKEN="$token" wrk -t1 "$@" -s bench/events.lua "http://127.0.0.1:$port" \
        | awk '/^RESULT/ {print $2, $3, $4, $5, $6}'
}
echo "== $size clusters: events from every cluster" >&2
events_max="$(events -c"$connections" -d"${duration}s")"
# Feeds alone and with events arriving at 200/s (4 connections paced by wrk's delay()),
# alternated three times; medians.
feeds_alone=() feeds_events=() events_rate=()
for round in 1 2 3; do
    feeds_alone+=("$(load platform-components | cut -d' ' -f1)")
    RATE=200 CONNECTIONS=4 events -c4 -d"$((duration + 2))s" >"$work/events-$round.txt" &
    background=$!
    sleep 1
    feeds_events+=("$(load platform-components | cut -d' ' -f1)")
    wait "$background"
    events_rate+=("$(cut -d' ' -f1 "$work/events-$round.txt")")
done
# The convergence views over the whole fleet, after those events: median of 5, in ms.
status_fleet_ms="$(timed /status/fleet)"
status_fleet_fresh_ms="$(after_write; once /status/fleet)"
# The console's pages, signed in with the write token (median of 5, in ms).
sign_in
console_ms="$(page_ms /ui/) / $(page_ms '/ui/?q=cluster-00042') / $(page_ms "/ui/clusters/$(head -1 "$work/ids.txt")") / $(page_ms /ui/catalog) / $(page_ms /ui/audit)"
console_more_ms="$(page_ms /ui/components/fleet-agent) / $(page_ms '/ui/components/fleet-agent?environment=prod&state=failed') / $(page_ms '/ui/?show=stale') / $(page_ms '/ui/?component=fleet-agent') / $(page_ms /ui/rollouts) / $(page_ms /ui/overlays)"
status_component_ms="$(timed '/status/components/fleet-agent?state=failed')"
events_saved="$(curl -s -H "Authorization: Bearer $token" "http://127.0.0.1:$port/metrics" \
    | awk '/^flux_inputs_events_received_total/ {n += $2} END {print n}')"
stop

echo "== $size clusters: every cluster with its own token" >&2
python3 bench/measure.py tokens "$work/db-$size.sqlite" "$work/dns-$size.txt"
start "$work/db-$size.sqlite" none
warm
shared="$(load platform-components)"
scoped="$(PER_CLUSTER=1 load platform-components)"
tokens_kib="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
stop

echo "== $size clusters: a rollout of a component used by every cluster, one wave per environment" >&2
SERVER_LOG="warn,flux_inputs::controller=debug" start "$work/db-$size.sqlite" none
read -r rollout_plan_ms rollout_get_ms rollout_s rollout_state < <(python3 bench/measure.py rollout "$port" "$token" fleet-agent)
sleep 1
stop
# The controller logs how long each of its writes held the writer.
rollout_took() { grep 'rollout moved' "$work/server.log" | grep -o "$1[^ ]* took_ms=[0-9]*" | sed 's/.*=//' || true; }
rollout_step_ms="$(rollout_took StartStep | sort -g | sed -n 2p)"
rollout_promote_ms="$(rollout_took Promote | tail -1)"

echo "== $size clusters: an edge replica kept by Litestream (file store)" >&2
litestream="$PWD/target/tools/bin/litestream"
[ -x "$litestream" ] || tests/prerequisites.sh
# bounded waits: N tries of 0.2 s
await() {
    for _ in $(seq "$1"); do eval "$2" && return 0; sleep 0.2; done
    echo "timed out: $2" >&2; tail -20 "$work/litestream.log" >&2; exit 1
}
SERVER_ROLE=hub start "$work/db-$size.sqlite" none
hub_port="$port" hub_pid="$pid"
printf 'dbs:\n  - path: %s\n    replica:\n      url: file://%s\n' "$work/db-$size.sqlite" "$work/replica-store" \
    >"$work/litestream-hub.yml"
setsid "$litestream" replicate -config "$work/litestream-hub.yml" >>"$work/litestream.log" 2>&1 &
groups+=("$!")
# The follower restarts until the hub's first snapshot is there, as systemd's Restart= does.
LITESTREAM="$litestream" setsid bash -c 'while true; do systemd/flux-inputs-follow "$0" "$1"; sleep 1; done' \
    "$work/edge.db" "file://$work/replica-store" >>"$work/litestream.log" 2>&1 &
groups+=("$!")
await 3000 '[ -e "$work/edge.db-txid" ]'
SERVER_ROLE=replica SERVER_MODE=read-only start "$work/edge.db" none
load platform-components 2 >/dev/null  # a replica holds every cluster from its load on
replica_feeds="$(load platform-components)"
read -r lag_median lag_max < <(python3 bench/measure.py lag "$hub_port" "$port" "$token" fleet-agent \
    "$(head -1 "$work/dns-$size.txt")" 20)
stop
port="$hub_port" pid="$hub_pid"
stop
for group in "${groups[@]}"; do kill -s TERM -- "-$group" 2>/dev/null || true; done
groups=()

printf '\nflux-inputs %s — %s, %s cores — wrk -t1 -c%s -d%ss, RUST_LOG=warn\n\n' \
    "$("$binary" --version | cut -d' ' -f2)" "$(uname -m)" "$(nproc)" "$connections" "$duration"
limit_feed_rps="$(echo "${limit[platform-components]}" | cut -d' ' -f1)"
read -r limit_health_rps _ limit_health_p99 _ _ <<<"${limit[health]}"
read -r _ _ limit_feed_p99 _ _ <<<"${limit[platform-components]}"
printf '| %-44s | %10s | %8s | %8s | %9s | %6s |\n' "endpoint ($clusters clusters)" "req/s" "p50 ms" "p99 ms" "vs limit" "non-2xx"
printf '|%s|%s|%s|%s|%s|%s|\n' "----------------------------------------------" "------------" "----------" "----------" "-----------" "--------"
printf '| %-44s | %10s | %8s | %8s | %9s | %6s |\n' \
    "limit server: /health (15 bytes)" "$limit_health_rps" "" "$limit_health_p99" "1.00" "" \
    "limit server: a $feed_bytes-byte body" "$limit_feed_rps" "" "$limit_feed_p99" "1.00" ""
for feed in health platform-components namespaces rolebindings clusters; do
    read -r rps p50 p99 non2xx errors <<<"${main[$feed]}"
    case "$feed" in
        health) label="GET /health (ceiling)" ;;
        clusters) label="GET /api/v2/flux/clusters?limit=100&offset=…" ;;
        *) label="GET …/{cluster_dns}/$feed" ;;
    esac
    # /health against the limit's /health, every feed against the limit's feed-sized body.
    if [ "$feed" = health ]; then yardstick="$limit_health_rps"; else yardstick="$limit_feed_rps"; fi
    printf '| %-44s | %10s | %8s | %8s | %9s | %6s |\n' "$label" "$rps" "$p50" "$p99" \
        "$(python3 -c "print(f'{$rps / $yardstick:.2f}')")" "$((non2xx + errors))"
done
read -r wrps _ _ wnon2xx werrors <<<"$writes"
read -r _ _ p99_small _ _ <<<"${result[$small]}"
read -r _ _ p99_large _ _ <<<"${result[$large]}"
printf '\n| %-52s | %14s |\n' "measure" "value"
printf '|%s|%s|\n' "------------------------------------------------------" "----------------"
printf '| %-52s | %14s |\n' \
    "peak RSS (VmHWM) under load, $clusters clusters" "$((rss_kib / 1024)) MiB" \
    "platform-components p99, $small clusters" "$p99_small ms" \
    "platform-components p99, $large clusters" "$p99_large ms" \
    "p99 ratio $large / $small" "$(python3 -c "print(f'{$p99_large / $p99_small:.2f}')")" \
    "start to /ready, existing $small-cluster database" "${ready_s[$small]} s" \
    "start to /ready, existing $clusters-cluster database" "${ready_s[$clusters]} s" \
    "start to /ready, existing $large-cluster database" "${ready_s[$large]} s" \
    "flux-inputs import, $clusters clusters: time" "${import_s[$clusters]} s" \
    "flux-inputs import, $clusters clusters: peak RSS" "$((import_kib[$clusters] / 1024)) MiB" \
    "flux-inputs import, $large clusters: time" "${import_s[$large]} s" \
    "flux-inputs import, $large clusters: peak RSS" "$((import_kib[$large] / 1024)) MiB" \
    "PUT /clusters/{id}, one client" "$wrps writes/s" \
    "catalog edit on all $clusters clusters: p50 / p99 (10)" "$edit_p50 / $edit_p99 ms" \
    "  its statuses; a cluster PUT sent during each" "$edit_status; $edit_concurrent" \
    "platform-components, shared read token" "$(echo "$shared" | cut -d' ' -f1) req/s" \
    "platform-components, $clusters per-cluster tokens" "$(echo "$scoped" | cut -d' ' -f1) req/s" \
    "  ratio per-cluster / shared (target >= 0.9)" "$(python3 -c "print(f'{$(echo "$scoped" | cut -d' ' -f1) / $(echo "$shared" | cut -d' ' -f1):.2f}')")" \
    "peak RSS with $clusters per-cluster tokens (VmHWM)" "$((tokens_kib / 1024)) MiB" \
    "POST …/events, $clusters clusters posting (-c$connections)" "$(echo "$events_max" | cut -d' ' -f1) events/s" \
    "  its p50 / p99; non-2xx" "$(echo "$events_max" | cut -d' ' -f2) / $(echo "$events_max" | cut -d' ' -f3) ms; $(($(echo "$events_max" | cut -d' ' -f4) + $(echo "$events_max" | cut -d' ' -f5)))" \
    "platform-components alone (median of 3)" "$(median "${feeds_alone[@]}") req/s" \
    "platform-components, events at 200/s (median of 3)" "$(median "${feeds_events[@]}") req/s" \
    "  events/s sent meanwhile (median)" "$(median "${events_rate[@]}")" \
    "  ratio with events / alone (target >= 0.9)" "$(python3 -c "print(f'{$(median "${feeds_events[@]}") / $(median "${feeds_alone[@]}"):.2f}')")" \
    "events accepted by the server in this run" "$events_saved" \
    "GET /status/fleet, $clusters clusters: after a write / kept (median of 5)" "$status_fleet_fresh_ms / $status_fleet_ms ms" \
    "GET /status/components/{id}?state=failed (median of 5)" "$status_component_ms ms" \
    "console: fleet / search / cluster / catalog / audit" "$console_ms ms" \
    "console: component / its failures / stale / by component / rollouts / overlays" "$console_more_ms ms" \
    "rollout over $clusters clusters, 4 waves: POST ?dry_run (plan)" "$rollout_plan_ms ms" \
    "  GET /rollouts/{id} (every cluster listed)" "$rollout_get_ms ms" \
    "  a step's write, $((clusters / 4)) clusters (2nd of 4)" "$rollout_step_ms ms" \
    "  the promotion's write, $clusters clusters" "$rollout_promote_ms ms" \
    "  start to $rollout_state, gate polled, no bake" "$rollout_s s" \
    "replica (Litestream copy): platform-components" "$(echo "$replica_feeds" | cut -d' ' -f1) req/s" \
    "  its p99" "$(echo "$replica_feeds" | cut -d' ' -f3) ms" \
    "  hub write to replica feed: median / max of 20" "$lag_median / $lag_max s" \
    "one platform-components feed" "$feed_bytes bytes"

printf '\n| %-58s | %16s |\n' "$large clusters" "value"
printf '|%s|%s|\n' "------------------------------------------------------------" "------------------"
printf '| %-58s | %16s |\n' \
    "peak RSS (VmHWM) serving, after the feeds' load" "$((large_rss_kib / 1024)) MiB" \
    "GET /metrics, the first after start (reads every cluster)" "$large_first_summary_ms ms" \
    "  RSS (VmRSS) right after it, the fleet's states kept" "$((large_kept_rss_kib / 1024)) MiB" \
    "GET /metrics: answer size" "$large_metrics_bytes bytes" \
    "GET /metrics: after a write / kept (median of 5)" "$large_metrics_fresh_ms / $large_metrics_ms ms" \
    "GET /status/fleet: after a write / kept (median of 5)" "$large_fleet_fresh_ms / $large_fleet_ms ms" \
    "console: fleet / search / component (median of 5)" "$large_console_ms ms" \
    "catalog edit on all $large clusters: p50 / p99 (5)" "$large_edit_p50 / $large_edit_p99 ms" \
    "  its statuses" "$large_edit_status"
if [ "$((wnon2xx + werrors))" -ne 0 ]; then echo "warning: $((wnon2xx + werrors)) failed writes" >&2; fi
overlays_part
