"""Benchmark: what a worker publishes while it runs — two workers, same run.

Every chain step, ``link`` callback and retry is a message the worker
publishes, and it may ack the task only once the broker has confirmed that
message. This script measures two shapes of that, on RabbitMQ, for each
worker binary it is given (for example the worker before and after a change,
or ours and Python Celery's):

  links   N tasks ``add(i, i)``, each with ``link=noop.si()``, pre-loaded into
          a fresh queue; the worker (``-c 256``) runs all N and the N
          callbacks they publish. Many tasks finish at once, so this shows
          whether their publishes share confirm waits.
  chain   one chain of M ``add`` steps (``add(1, 1) | add(1) | …``): each step
          publishes the next, one at a time; this shows one publish's cost.

The clock is the worker's own log: from the first ``received`` to the last
``succeeded`` line (Celery's log format, millisecond timestamps), so the
time to start a worker and to pre-load the queue is not counted.

Usage (bench/follow_ups.sh builds the binaries):

  .venv/bin/python bench/follow_ups.py --broker amqp://guest:guest@127.0.0.1:5672// \\
        --worker before=/tmp/before/celery-sms-demo --worker after=target/release/celery-sms-demo

The table goes to stdout, progress to stderr.
"""
import argparse
import datetime
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from celery import Celery, chain

LINE = re.compile(r'^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): \w+/\w+\] Task (\w+)\[[^\]]+\] (received|succeeded)')


def progress(message):
    print(message, file=sys.stderr, flush=True)


def log_seconds(path, expected):
    """First `received` to last `succeeded` in a worker's log, and how many succeeded."""
    first = last = None
    done = 0
    with open(path, encoding='utf-8', errors='replace') as log:
        for line in log:
            match = LINE.match(line)
            if not match:
                continue
            stamp = datetime.datetime.strptime(match.group(1), '%Y-%m-%d %H:%M:%S,%f')
            if match.group(3) == 'received':
                first = first or stamp
            else:
                last = stamp
                done += 1
    if first is None or last is None or done < expected:
        raise SystemExit(f'{path}: {done} of {expected} tasks succeeded')
    return (last - first).total_seconds(), done


def run_worker(binary, broker, queue, log_path, expected, timeout):
    env = dict(os.environ, CELERY_BROKER_URL=broker)
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(
            [binary, 'worker', '-l', 'info', '-Q', queue, '--default-queue', queue, '-c', '256',
             '--without-mingle'],
            stdout=subprocess.DEVNULL, stderr=log, env=env)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with open(log_path, encoding='utf-8', errors='replace') as log:
                if log.read().count('] succeeded in') >= expected:
                    return
            time.sleep(0.2)
        raise SystemExit(f'{binary}: not done within {timeout} s (see {log_path})')
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def preload_links(app, queue, n):
    add, noop = app.signature('add'), app.signature('noop')
    with app.producer_or_acquire() as producer:
        for i in range(n):
            add.clone(args=(i, i)).apply_async(
                queue=queue, link=noop.clone().set(queue=queue, immutable=True), producer=producer)


def preload_chain(app, queue, m):
    steps = [app.signature('add', args=(1, 1), queue=queue)]
    steps += [app.signature('add', args=(1,), queue=queue) for _ in range(m - 1)]
    chain(*steps).apply_async()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--broker', default='amqp://guest:guest@127.0.0.1:5672//')
    parser.add_argument('--worker', action='append', required=True, metavar='LABEL=BINARY')
    parser.add_argument('--links', type=int, default=10_000)
    parser.add_argument('--chain', type=int, default=1_000)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--timeout', type=float, default=600)
    args = parser.parse_args()
    workers = [w.split('=', 1) for w in args.worker]
    app = Celery(broker=args.broker)
    results = {label: {'links': [], 'chain': []} for label, _ in workers}
    # The workers' logs (the clock) go to a directory of their own, kept
    # until the run ends: look there if a round fails.
    logs = tempfile.mkdtemp(prefix='follow-ups-')
    for round_ in range(args.rounds):
        for label, binary in workers:
            for shape, count, preload in (('links', args.links, preload_links),
                                          ('chain', args.chain, preload_chain)):
                queue = f'bench-follow-ups-{uuid.uuid4().hex[:8]}'
                expected = 2 * count if shape == 'links' else count
                progress(f'round {round_ + 1}: {label} {shape} ({expected} tasks) on {queue}')
                with app.connection_for_write() as connection:
                    connection.default_channel.queue_declare(queue=queue, durable=True, auto_delete=False)
                preload(app, queue, count)
                log_path = os.path.join(logs, f'follow-ups-{label}-{shape}.log')
                run_worker(binary, args.broker, queue, log_path, expected, args.timeout)
                seconds, done = log_seconds(log_path, expected)
                results[label][shape].append(done / seconds)
                with app.connection_for_write() as connection:
                    connection.default_channel.queue_delete(queue=queue)
                os.remove(log_path)
    print(f'\nFollow-ups on RabbitMQ ({args.broker.split("@")[-1]}), median of {args.rounds} rounds, tasks/s:\n')
    print(f'| shape | ' + ' | '.join(label for label, _ in workers) + ' | ratio (last / first) |')
    print('|---|' + '---|' * len(workers) + '---|')
    for shape, what in (('links', f'{args.links:,} tasks each publishing a link'),
                        ('chain', f'one chain of {args.chain:,} steps')):
        medians = [statistics.median(results[label][shape]) for label, _ in workers]
        ratio = medians[-1] / medians[0] if medians[0] else float('nan')
        print(f'| {what} | ' + ' | '.join(f'{m:,.0f}' for m in medians) + f' | {ratio:.2f}× |')


if __name__ == '__main__':
    main()
