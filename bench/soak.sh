#!/usr/bin/env bash
# The soak run with faults: both brokers, our workers beside a Python one,
# a fault every 30-60 s, and at the end tasks sent / run / lost / duplicated,
# the recovery gap after each fault and the workers' memory (bench/soak.py
# says exactly what it does).
#   bench/soak.sh                     # 10 minutes
#   SOAK_SECONDS=1800 bench/soak.sh   # 30 minutes
#   SOAK_RATE=50 SOAK_SEED=7 bench/soak.sh
# It runs its own two redis-servers on free ports and its own RabbitMQ
# queues, and faults only the processes it started.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services
python=$(scripts/python-env)
cargo build -q --release -p celery-sms-demo
exec "$python" bench/soak.py --demo target/release/celery-sms-demo --python "$python" "$@"
