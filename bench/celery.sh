#!/usr/bin/env bash
# Benchmark the Celery half: our worker and `send` vs real Python Celery 5.7,
# on Redis and on RabbitMQ, in one run (median of 3 rounds by default).
#   bench/celery.sh                       # 20,000 tasks per step
#   BENCH_TASKS=100000 bench/celery.sh    # longer
# Redis db 15 must be unused: the script checks, and cleans up what it made.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services
python=$(scripts/python-env)
cargo build -q --release -p celery-sms-demo -p consumer
exec "$python" bench/celery_bench.py \
  --broker redis://127.0.0.1:6379/15 \
  --broker amqp://guest:guest@127.0.0.1:5672// \
  --rust-bin target/release/celery-sms-demo --consumer-bin target/release/consumer \
  --tasks "${BENCH_TASKS:-20000}" --rounds "${BENCH_ROUNDS:-3}"
