#!/usr/bin/env bash
# What task events cost: the noop drain over Redis with and without -E, for
# our worker and for Python Celery (solo pool), in one run, with a monitor
# subscribed to the events as Flower would be (median of 3 rounds).
#   bench/events.sh                       # 50,000 tasks per Rust step
#   BENCH_TASKS=100000 bench/events.sh    # longer
# Redis db 15 must be unused: the script checks, and cleans up what it made.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services
python=$(scripts/python-env)
cargo build -q --release -p celery-sms-demo
exec "$python" bench/events_bench.py \
  --broker redis://127.0.0.1:6379/15 \
  --rust-bin target/release/celery-sms-demo \
  --tasks "${BENCH_TASKS:-50000}" --rounds "${BENCH_ROUNDS:-3}" "$@"
