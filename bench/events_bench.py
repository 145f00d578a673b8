"""What task events (-E) cost a worker: the noop drain over Redis, with and
without -E, ours and Python Celery's, measured in one run.

Each step pre-loads N noop tasks, starts the worker, and times the drain from
its first task taken to its last one acked (``celery_bench.time_drain``).
While it drains, a monitor subscribes to the events channel
(``PSUBSCRIBE /<db>.celeryev/*``, what ``celery events`` and Flower do) and
counts the task events it gets (without parsing them, so the monitor does
not take a core from the worker), so the events are really produced, sent
and read. Python Celery (solo pool, its fastest here) drains at about a
fiftieth of our rate, so it gets a tenth of the tasks.

The issue's bar: with -E our drain stays at >= 80 % of its rate without.
"""
import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import celery_bench as cb   # noqa: E402  (shared helpers: brokers, drains, processes)


class EventCounter(threading.Thread):
    """Counts task events on /<db>.celeryev/* (lists on task.multi, as sent)."""

    def __init__(self, url):
        super().__init__(daemon=True)
        import redis
        client = redis.Redis.from_url(url)
        db = client.connection_pool.connection_kwargs.get('db', 0)
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(f'/{db}.celeryev/*')
        self.task_events = 0
        self.running = True

    def run(self):
        while True:
            message = self.pubsub.get_message(timeout=0.5)
            if not message:
                if self.running:
                    continue
                break   # stopped, and nothing more in flight
            # Counted without parsing the events: a monitor that decodes
            # 100,000 events a second in Python would take a core from the
            # worker it measures on a 2-core machine.
            envelope = json.loads(message['data'])
            body = base64.b64decode(envelope['body'])
            self.task_events += body.count(b'"type":"task-') + body.count(b'"type": "task-')

    def stop(self):
        self.running = False
        self.join(timeout=5)
        self.pubsub.close()


def drain(bench, label, cmd, n):
    queue = bench.fresh_queue('events')
    proc = None
    counter = EventCounter(bench.url) if bench.args.monitor else None
    if counter:
        counter.start()
    log = tempfile.NamedTemporaryFile('w+', prefix='events-bench-', suffix='.log')
    try:
        bench.enqueue_rust(queue) if n == bench.n else preload(bench, queue, n)
        proc = subprocess.Popen(cmd(queue), cwd=cb.PYDIR, env=bench.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        rate, _ = cb.time_drain(bench.broker, proc, log, queue, n, bench.timeout, label)
    finally:
        if proc is not None:
            cb.stop(proc)
        if counter:
            counter.stop()
        log.close()
        bench.broker.delete(queue)
    seen = counter.task_events if counter else 0
    cb.progress(f'  {label:<28} {rate:>10,.0f} tasks/s  ({seen:,} task events seen)')
    return rate, seen


def preload(bench, queue, n):
    cmd = [bench.args.rust_bin, 'send', '--count', str(n), '--queue', queue,
           '--task', 'noop', '--broker', bench.url]
    cb.run_for_rate(cmd, bench.env, n, 'rust send', bench.timeout)
    bench.wait_ready(queue, n)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--broker', required=True, metavar='URL', help='an empty Redis db, e.g. redis://127.0.0.1:6379/15')
    p.add_argument('--rust-bin', required=True, metavar='PATH')
    p.add_argument('--tasks', type=int, default=50000, metavar='N')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--no-monitor', dest='monitor', action='store_false',
                   help='no subscriber: the events are published to nobody')
    args = p.parse_args()
    args.rust_bin = os.path.abspath(args.rust_bin)
    args.drain_timeout = None
    bench = cb.Bench(args, args.broker)
    bench.broker.check_dedicated()
    python_n = max(args.tasks // 10, 100)

    def rust(events):
        return lambda queue: [args.rust_bin, 'worker', '-l', 'info', '-Q', queue, '--broker', args.broker,
                              '-c', cb.RUST_CONCURRENCY, '-n', f'{queue}@%h', '--without-mingle',
                              *(['-E'] if events else [])]

    def python(events):
        return lambda queue: [cb.CELERY, '-A', 'celery_tasks.main', 'worker', '-l', 'info', '-Q', queue,
                              '--without-mingle', '--without-gossip', '-n', f'{queue}@%h',
                              '--pool', 'solo', *(['-E'] if events else [])]

    steps = [
        ('rust, no events', rust(False), args.tasks),
        ('rust -E', rust(True), args.tasks),
        ('python solo, no events', python(False), python_n),
        ('python solo -E', python(True), python_n),
    ]
    samples = {label: [] for label, _, _ in steps}
    seen = {label: [] for label, _, _ in steps}
    try:
        for round_no in range(1, args.rounds + 1):
            cb.progress(f'round {round_no}/{args.rounds}')
            for label, cmd, n in steps:
                rate, events = drain(bench, label, cmd, n)
                samples[label].append(rate)
                seen[label].append(events)
    finally:
        bench.broker.cleanup()

    med = {label: statistics.median(rates) for label, rates in samples.items()}
    load = ', '.join(f'{x:.1f}' for x in os.getloadavg())
    print(f'\nnoop drain over {cb.masked(args.broker)}, median of {args.rounds} rounds '
          f'(rust {args.tasks:,} tasks, python {python_n:,}), {os.cpu_count()} CPUs, load {load} at the end')
    print(f'| worker | no events | -E | -E / no events | task events seen (last round) |')
    print(f'|---|---|---|---|---|')
    for who, off, on in (('ours', 'rust, no events', 'rust -E'),
                         ('Python Celery, solo', 'python solo, no events', 'python solo -E')):
        print(f'| {who} | {med[off]:,.0f}/s | {med[on]:,.0f}/s | {med[on] / med[off]:.0%} | {seen[on][-1]:,} |')
    print(f'\nours with -E vs Python with -E: {med["rust -E"] / med["python solo -E"]:.1f}x')


if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:
        sys.exit('interrupted')
