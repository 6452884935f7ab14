#!/usr/bin/env bash
# Reproduces the README's benchmark table: `signoff bench roundtrip`, three runs per
# configuration, each on a fresh server and database; the summaries are medians.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bench() { ./target/release/signoff bench roundtrip --seconds 10 --runs 3 "$@"; }
bench --agents 32 --durability full
bench --agents 32 --durability normal --waiting 0
bench --agents 16 --durability normal --waiting 0
