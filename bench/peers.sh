#!/usr/bin/env bash
# Benchmark our Celery worker against rusty-celery (crate `celery` 0.5) on
# Redis and RabbitMQ: drain rate, peak memory, and what a kill -9 loses.
#   bench/peers.sh                                    # 20,000 tasks, 3 rounds
#   BENCH_TASKS=5000 BENCH_ROUNDS=1 bench/peers.sh    # quick
# Redis db 15 must be unused: the script checks, and cleans up what it made.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services
python=$(scripts/python-env)
cargo build -q --release -p celery-sms-demo

# rusty-celery builds outside the workspace (target/ is git-ignored), in its
# own target dir, so its old dependency tree never touches our Cargo.lock.
# Low priority: its first build compiles ~290 crates (minutes).
peer=target/peers/rusty-worker
mkdir -p "$peer"
cp -rp bench/peers/rusty-worker/. "$peer"/   # -p: unchanged sources, no rebuild
# Its macro trips a future-incompatibility lint: known, and not ours to fix.
(cd "$peer" && CARGO_TARGET_DIR=../target CARGO_FUTURE_INCOMPAT_REPORT_FREQUENCY=never \
  nice -n 19 cargo build -q --release --locked)
version=$(awk '$0 == "name = \"celery\"" { getline; gsub(/"/, "", $3); print $3 }' "$peer/Cargo.lock")

exec "$python" bench/peers_bench.py \
  --broker redis://127.0.0.1:6379/15 \
  --broker amqp://guest:guest@127.0.0.1:5672// \
  --rust-bin target/release/celery-sms-demo \
  --rusty-bin target/peers/target/release/rusty-worker --rusty-version "$version" \
  --tasks "${BENCH_TASKS:-20000}" --rounds "${BENCH_ROUNDS:-3}"
