#!/usr/bin/env bash
# The README's PostgreSQL table: rounds of one run each of SQLite, PostgreSQL with one server and
# PostgreSQL with three, interleaved so that the machine's drift from one minute to the next falls
# on all three alike. Prints every run, each round's loss of three servers against one, and the
# medians. Usage: SIGNOFF_BENCH_PG_URL=postgres://user@host:port/db?sslmode=disable benches/fleet_rounds.sh [ROUNDS]
# (sslmode=disable: TLS over loopback would only add its cost to every configuration; or name the
# server's Unix socket, e.g. postgres://user@%2Fvar%2Frun%2Fpostgresql/db, which costs a little less).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${SIGNOFF_BENCH_PG_URL:?set SIGNOFF_BENCH_PG_URL to a postgres:// URL}"
rounds="${1:-5}"
cargo build --release --quiet
signoff=./target/release/signoff
run=(bench roundtrip --agents 32 --seconds 10 --runs 1 --durability full --json)
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for ((round = 1; round <= rounds; round++)); do
    for config in sqlite pg1 pg3; do
        case "$config" in
            sqlite) extra=() ;;
            pg1) extra=(--db "$SIGNOFF_BENCH_PG_URL" --instances 1) ;;
            pg3) extra=(--db "$SIGNOFF_BENCH_PG_URL" --instances 3) ;;
        esac
        "$signoff" "${run[@]}" "${extra[@]}" | python3 -c '
import json, sys
run = json.load(sys.stdin)["median"]
print(json.dumps({"round": int(sys.argv[1]), "config": sys.argv[2], **run}))
' "$round" "$config" >>"$results"
    done
done
python3 - "$results" <<'PY'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
def of(config, key):
    return [run[key] for run in runs if run["config"] == config]
print(f"{'config':8} {'round trips/s (runs)':44} {'p50 ms':>7} {'p99 ms':>7} {'RSS MiB':>8} errors")
for config in ("sqlite", "pg1", "pg3"):
    rates = of(config, "round_trips_per_second")
    print(f"{config:8} {statistics.median(rates):7.0f} ({', '.join(f'{r:.0f}' for r in rates):34}) "
          f"{statistics.median(of(config, 'decide_to_agent_p50_ms')):7.2f} "
          f"{statistics.median(of(config, 'decide_to_agent_p99_ms')):7.2f} "
          f"{statistics.median(of(config, 'server_rss_mib_with_waiting')):8.1f} "
          f"{sum(of(config, 'errors'))}")
losses = [1 - three / one for one, three in zip(of("pg1", "round_trips_per_second"),
                                                of("pg3", "round_trips_per_second"))]
median_loss = 1 - statistics.median(of("pg3", "round_trips_per_second")) / statistics.median(
    of("pg1", "round_trips_per_second"))
print(f"three against one: {median_loss:.1%} by the medians; per round "
      + ", ".join(f"{loss:.1%}" for loss in losses))
PY
