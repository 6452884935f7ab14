#!/usr/bin/env bash
# Reproduces the README's benchmark tables (round trip, inbox, scheduler). Each run starts a fresh server and
# database; the summaries are medians. The inbox figures need tmux. With SIGNOFF_BENCH_PG_URL set to a
# postgres:// URL, the round trip also runs on PostgreSQL, with one server and with three sharing the database;
# each run drops and recreates the schema signoff_bench there.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
signoff=./target/release/signoff
"$signoff" bench roundtrip --agents 32 --seconds 10 --runs 5 --durability full
"$signoff" bench roundtrip --agents 32 --seconds 10 --runs 3 --durability normal --waiting 0
"$signoff" bench roundtrip --agents 16 --seconds 10 --runs 3 --durability normal --waiting 0
if [[ -n "${SIGNOFF_BENCH_PG_URL:-}" ]]; then
    for instances in 1 3; do
        "$signoff" bench roundtrip --agents 32 --seconds 10 --runs 5 --durability full \
            --db "$SIGNOFF_BENCH_PG_URL" --instances "$instances"
    done
fi
"$signoff" bench inbox --tasks 10000 --runs 3
"$signoff" bench timers --tasks 100000 --due 10000 --window 60 --burst 20000 --runs 3
cargo bench --bench tui
