#!/usr/bin/env bash
# Benchmark the RabbitMQ half: our producer/consumer vs the blog's pika scripts.
#   bench/amqp.sh                        # 50,000 messages per step, median of 3
#   BENCH_MESSAGES=1000000 bench/amqp.sh # longer run
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services
python=$(scripts/python-env)
cargo build -q --release -p producer -p consumer
exec "$python" bench/amqp_bench.py "$python" target/release/producer target/release/consumer
