#!/usr/bin/env bash
# SMS tasks/s of our default worker against Python Celery's default worker and
# its best I/O pools, every task calling a local Ronglian stand-in that
# answers after 100 ms; and our default worker's noop drain against -c 128.
#   bench/sms.sh                   # median of 3 rounds
#   BENCH_ROUNDS=1 bench/sms.sh
# Redis db 15 must be unused (checked); it also takes the SMS "already sent"
# records, deleted at the end with everything else the run made.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services
python=$(scripts/python-env)
cargo build -q --release -p celery-sms-demo
exec "$python" bench/sms_bench.py --broker redis://127.0.0.1:6379/15 \
  --rust-bin target/release/celery-sms-demo --rounds "${BENCH_ROUNDS:-3}"
