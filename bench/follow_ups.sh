#!/usr/bin/env bash
# What the worker publishes while it runs (link callbacks, chain steps), on
# RabbitMQ: the worker at BEFORE (a git revision) against this tree's, same
# run, as tasks/s and a ratio. See bench/follow_ups.py.
#   bench/follow_ups.sh                    # BEFORE: the worker before the group-commit publisher
#   BEFORE=HEAD~3 BENCH_LINKS=20000 bench/follow_ups.sh
set -euo pipefail
cd "$(dirname "$0")/.."
before=${BEFORE:-a6a8e01}
scripts/services
python=$(scripts/python-env)
worktree=$(mktemp -d)
trap 'git worktree remove --force "$worktree" >/dev/null 2>&1 || true' EXIT
git worktree add --detach "$worktree" "$before" >/dev/null
# One build at a time (2 cores); the earlier tree keeps a target dir of its own.
(cd "$worktree" && cargo build -q --release -p celery-sms-demo --target-dir target/bench-before)
cargo build -q --release -p celery-sms-demo
cp "$worktree/target/bench-before/release/celery-sms-demo" target/release/celery-sms-demo-before
exec "$python" bench/follow_ups.py \
  --worker "before=target/release/celery-sms-demo-before" \
  --worker "after=target/release/celery-sms-demo" \
  --links "${BENCH_LINKS:-10000}" --chain "${BENCH_CHAIN:-1000}" --rounds "${BENCH_ROUNDS:-3}"
