#!/usr/bin/env bash
# Reproduces the README's benchmark tables. Each run starts a fresh server and
# database; the summaries are medians. The inbox figures need tmux.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
signoff=./target/release/signoff
"$signoff" bench roundtrip --agents 32 --seconds 10 --runs 5 --durability full
"$signoff" bench roundtrip --agents 32 --seconds 10 --runs 3 --durability normal --waiting 0
"$signoff" bench roundtrip --agents 16 --seconds 10 --runs 3 --durability normal --waiting 0
"$signoff" bench inbox --tasks 10000 --runs 3
cargo bench --bench tui
