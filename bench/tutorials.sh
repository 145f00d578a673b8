#!/usr/bin/env bash
# Tutorials 6 and 7, ours against pika's, in one run on this machine:
#   * RPC calls/s: pika's client (rpc_bench.py, the tutorial's client in a
#     loop) and ours, one call at a time, against the same server (ours);
#     then ours with many calls in flight on its one callback queue, and
#     with direct reply-to;
#   * publisher confirms: 50,000 messages with each of our three strategies,
#     and pika's one-at-a-time (the only one its BlockingChannel can do).
#   bench/tutorials.sh                              # 5,000 calls, 50,000 messages
#   BENCH_CALLS=20000 BENCH_MESSAGES=100000 bench/tutorials.sh
# Everything runs in a vhost of its own, deleted at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/services >/dev/null
python=$(scripts/python-env)
cargo build -q --release -p tutorials
calls=${BENCH_CALLS:-5000}
messages=${BENCH_MESSAGES:-50000}
vhost="bench-tutorials-$$"
rabbitmqctl -q add_vhost "$vhost" >/dev/null
rabbitmqctl -q set_permissions -p "$vhost" guest ".*" ".*" ".*" >/dev/null
export AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$vhost"
bin=target/release
server=
served=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rabbitmqctl -q delete_vhost "$vhost" >/dev/null || true
  rm -f "$served"
}
trap cleanup EXIT

# One server for every client: its prefetch lets it hold a window of requests.
served=$(mktemp)
$bin/rpc_server --prefetch 100 -l warning >"$served" &
server=$!
# pika's client would wait forever for a server that is not there yet.
for _ in $(seq 100); do grep -q "Awaiting RPC requests" "$served" && break; sleep 0.1; done
grep -q "Awaiting RPC requests" "$served" || { echo "rpc_server did not start" >&2; exit 1; }

rate() { sed -n 's/.* \([0-9]*\) calls\/s$/\1/p'; }
echo "Tutorial 6, RPC: $calls calls of fib(1), same server (ours, --prefetch 100)"
pika=$("$python" tutorials/python/rpc_bench.py "$calls" 1 | rate)
printf '  %-46s %8s calls/s\n' "pika rpc_client (one call at a time)" "$pika"
for run in "1:" "64:" "64:--direct-reply-to"; do
  concurrency=${run%%:*}; extra=${run#*:}
  ours=$($bin/rpc_client 1 --calls "$calls" --concurrency "$concurrency" $extra -l warning | rate)
  label="ours, $concurrency at a time${extra:+, direct reply-to}"
  printf '  %-46s %8s calls/s  %5.1fx pika\n' "$label" "$ours" "$(awk -v a="$ours" -v b="$pika" 'BEGIN { print a / b }')"
done

echo
echo "Tutorial 7, publisher confirms: $messages messages per strategy"
ours=$($bin/publisher_confirms "$messages" -l warning)
pika=$("$python" tutorials/python/publisher_confirms.py "$messages")
echo "$ours" | sed 's/^/  ours: /'
echo "$pika" | sed 's/^/  pika: /'
ms() { sed -n "s/.*$1 in \([0-9,]*\) ms$/\1/p" | tr -d ,; }
awk -v a="$(echo "$pika" | ms individually)" -v b="$(echo "$ours" | ms individually)" \
  'BEGIN { printf "  one at a time: ours %.1fx faster than pika\n", a / b }'
