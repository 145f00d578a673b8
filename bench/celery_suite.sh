#!/usr/bin/env bash
# Runs Celery 5.7's own canvas tests, `t/integration/test_canvas.py` from the
# celery sdist, unchanged, twice:
#
#   python  only Celery's Python session worker, as Celery's CI runs it;
#   mixed   the same, with the tasks ported to Rust (`integration-tasks/`)
#           routed by Celery's `task_routes` to a queue our worker consumes.
#
#   bench/celery_suite.sh [python|mixed|both] [extra pytest arguments]
#
# It takes tens of minutes per run (the suite waits on timeouts by design),
# so it is a command of its own, like the benchmarks, not part of CI. The
# pass counts go in the README. Each run's log and pytest report are kept in
# target/celery-suite/<mode>/.
#
# The runs use RabbitMQ's default vhost and Redis database 0 (the suite's
# tasks talk to localhost:6379/0 themselves), so run it on a quiet machine,
# not beside `scripts/test`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mode=${1:-both}
[ $# -gt 0 ] && shift
case "$mode" in python | mixed | both) ;; *)
  echo "bench/celery_suite.sh: unknown mode '$mode'; use python, mixed or both" >&2
  exit 2
  ;;
esac

python=$(scripts/python-env)
"$python" -m pip install -q --disable-pip-version-check -r bench/celery-suite-requirements.txt

work=$root/target/celery-suite
mkdir -p "$work"
if [ ! -d "$work/celery-5.7.0/t/integration" ]; then
  "$python" -m pip download -q --disable-pip-version-check --no-binary :all: --no-deps \
    celery==5.7.0 -d "$work"
  tar xzf "$work/celery-5.7.0.tar.gz" -C "$work"
fi
sdist=$work/celery-5.7.0

# The tasks our worker runs: every task its banner lists under [tasks]
# (integration-tasks/, by Celery name). Anything else stays with Python.
ported_tasks() {
  sed -n 's/^  \. \(t\.integration\.tasks\.[a-z_0-9]*\)$/\1/p' "$1"
}

# Waits for the worker whose log is $1 to say it is ready.
wait_ready() {
  for _ in $(seq 1 120); do
    grep -q ' ready\.$' "$1" && return 0
    sleep 0.5
  done
  echo "bench/celery_suite.sh: our worker did not start; see $1" >&2
  return 1
}

run() {
  local mode=$1
  shift
  local out=$work/$mode
  rm -rf "$out"
  mkdir -p "$out"
  # The suite reads its configuration overrides from this file (conftest.py).
  local config=$sdist/integration-tests-config.json
  local rust_worker=
  if [ "$mode" = mixed ]; then
    cargo build -q -p integration-tasks
    # Our worker consumes `rust`; what it sends on (chain steps, callbacks,
    # replacements) goes to its default queue, `celery`, as Celery's would
    # without routes for them.
    "$root/target/debug/integration-tasks" worker -Q rust -c 16 --without-mingle \
      --broker amqp://guest:guest@localhost:5672// --result-backend redis://localhost:6379/0 \
      >"$out/rust-worker.log" 2>&1 &
    rust_worker=$!
    wait_ready "$out/rust-worker.log"
    # Routed by exchange and routing key, not by a queue of the app's
    # own: the suite fails any test whose app has queues beyond `celery`.
    # Our worker declares the direct exchange `rust` bound to its queue.
    local routes
    routes=$(ported_tasks "$out/rust-worker.log" | "$python" -c '
import json, sys
route = {"exchange": "rust", "exchange_type": "direct", "routing_key": "rust"}
print(json.dumps({name.strip(): route for name in sys.stdin if name.strip()}))')
    printf '{"task_routes": %s}\n' "$routes" >"$config"
  else
    echo '{}' >"$config"
  fi
  local started=$SECONDS
  set +e
  (cd "$sdist" && TEST_BROKER=amqp://guest:guest@localhost:5672// TEST_BACKEND=redis://localhost:6379/0 \
    "$python" -m pytest -p celery.contrib.pytest t/integration/test_canvas.py -p no:cacheprovider -q -rfEs \
    --junitxml="$out/report.xml" "$@" >"$out/pytest.log" 2>&1)
  set -e
  local took=$((SECONDS - started))
  if [ -n "$rust_worker" ]; then
    kill -TERM "$rust_worker" 2>/dev/null || true
    wait "$rust_worker" 2>/dev/null || true
  fi
  rm -f "$config"
  echo "$mode: $(grep -E "[0-9]+ (passed|failed|errors?)\b" "$out/pytest.log" | tail -n 1) (${took}s; log: target/celery-suite/$mode/pytest.log)"
  if [ -n "$rust_worker" ]; then
    echo "$mode: our worker ran $(grep -c '\] received$' "$out/rust-worker.log") tasks (log: target/celery-suite/$mode/rust-worker.log)"
  fi
}

case "$mode" in
  both)
    run python "$@"
    run mixed "$@"
    ;;
  *) run "$mode" "$@" ;;
esac
