#!/usr/bin/env bash
# Quorum versus classic queues, for the Celery half, in one run: `send`'s
# confirmed publish rate and the worker's drain rate (ours and Python
# Celery's), then the broker's own ceilings, first on classic queues, then
# on quorum queues (Celery's task_default_queue_type = 'quorum').
#   bench/quorum.sh                          # the main broker: a one-member quorum queue
#   BENCH_BROKER=amqp://guest:guest@127.0.0.1:5681// bench/quorum.sh
#                                            # node c1 of scripts/cluster: three replicas
#   BENCH_TASKS=50000 BENCH_ROUNDS=3 bench/quorum.sh
# The steps are bench/celery.sh's (bench/celery_bench.py); queues are deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services
python=$(scripts/python-env)
cargo build -q --release -p celery-sms-demo -p consumer
exec "$python" bench/celery_bench.py \
  --broker "${BENCH_BROKER:-amqp://guest:guest@127.0.0.1:5672//}" \
  --queue-type classic --queue-type quorum \
  --rust-bin target/release/celery-sms-demo --consumer-bin target/release/consumer \
  --tasks "${BENCH_TASKS:-20000}" --rounds "${BENCH_ROUNDS:-1}"
