"""Benchmark: real Python Celery 5.7 vs our Rust Celery worker, same broker, same run.

The blog claims "单个Celery进程每分钟可以处理数以百万计的任务" (one Celery process can
handle millions of tasks a minute). This script measures what the blog's own
setup does with a task that does nothing (``noop``), next to the Rust
``celery-sms-demo`` binary that speaks the same protocol:

  enqueue  N tasks into a fresh queue:
             Python  ``noop.delay()`` in a loop (a fresh process, connection
                     opened before the clock starts; no result backend, as in the blog)
             Rust    ``RUST send --count N --queue Q --task noop --broker URL``
                     (its own ``<rate> tasks/s`` line on stdout)
  drain    N pre-loaded tasks, clock from the first task taken off the queue
           to the last one acknowledged, for these workers:
             celery -A celery_tasks.main worker -l info -Q Q --without-mingle
                    --without-gossip --without-heartbeat --pool solo
                                                    | --pool prefork -c 2
                                                    | --pool threads -c 8
             RUST worker -l info -Q Q --broker URL -c 128
           (async tasks: a slot is a few hundred bytes, not a process or thread,
           so a wide window is the Rust worker's best configuration, as
           prefork/threads are tuned for Python's)
           and the worker's peak resident memory (VmRSS of the process and all
           its children, e.g. the prefork pool's) while it drains.

Over RabbitMQ, two more rows measure the broker's own ceiling for these
messages on this machine, so a worker's figure can be read against it:
  enqueue  two ``RUST send --count N/2`` at once into one queue (their sum):
           if two producers together go no faster than one, the producer is
           not what limits the rate — the broker is.
  drain    Part 1's ``consumer --auto-ack`` (``--consumer-bin``): the lightest
           client possible — no acks, no task, no log line per message — on the
           same N pre-loaded Celery messages. A worker that acks and runs
           every task cannot be expected to drain one queue faster.

Every step runs ``--rounds`` times; the table shows medians.

How "done" is detected:
  Redis     the queue list is empty AND kombu's ``unacked`` hash is empty. That
            hash is shared by every queue of the database, so the broker URL
            must name a database used by nothing else: the script refuses to
            start on a non-empty one, and at the end it deletes the keys the
            runs created there (it never runs FLUSHDB).
  RabbitMQ  AMQP has no way to see unacknowledged messages without the
            management plugin, so the clock stops when ``queue.declare(passive)``
            reports 0 ready messages. At that moment at most one prefetch window
            is still in the worker (Celery: 4 x concurrency, so 4/8/32 for
            solo/prefork -c 2/threads -c 8), which is under 0.2 % of 20,000
            tasks. Before the worker is stopped, ``rabbitmqctl list_queues
            messages_unacknowledged`` (when available) confirms it acked everything.

Usage (the venv made by scripts/python-env has celery, redis and pika):

  .venv/bin/python bench/celery_bench.py --broker redis://127.0.0.1:6379/15 \\
        --broker amqp://guest:guest@127.0.0.1:5672// --rust-bin target/release/celery-sms-demo
  .venv/bin/python bench/celery_bench.py --broker redis://127.0.0.1:6379/15 --skip-rust --tasks 2000 --rounds 1

The table goes to stdout, progress to stderr.
"""
import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from urllib.parse import unquote, urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PYDIR = os.path.join(ROOT, 'celery-sms-demo', 'python')   # holds celery_tasks/
CELERY = os.path.join(os.path.dirname(sys.executable), 'celery')
RATE = re.compile(r'([\d,.]+) tasks/s')
RUST_CONCURRENCY = os.environ.get('RUST_CONCURRENCY', '128')

PYTHON_POOLS = [
    ('python solo', ['--pool', 'solo']),
    ('python prefork -c 2', ['--pool', 'prefork', '-c', '2']),
    ('python threads -c 8', ['--pool', 'threads', '-c', '8']),
]
RUST_WORKER = f'rust worker -c {RUST_CONCURRENCY}'
CEILING_SEND = 'rust send x2 (sum)'
CEILING_DRAIN = 'consumer --auto-ack'
ELAPSED = re.compile(r' in ([\d.]+) s')


def progress(message):
    print(f'[bench] {message}', file=sys.stderr, flush=True)


def masked(url):
    """The URL with its password shown as ** (as Celery's banner does)."""
    return re.sub(r'(://[^:/@]*:)[^@]*@', r'\1**@', url)


# --- the Python enqueue step (runs in a child process) ------------------------

def python_enqueue(count):
    """``noop.delay()`` ``count`` times; print '<n> tasks in <s> s: <rate> tasks/s'.

    Runs in its own process (like the Rust CLI) with CELERY_BROKER_URL and
    CELERY_QUEUE set, so ``delay()`` goes exactly where the blog's would.
    """
    sys.path.insert(0, PYDIR)
    from celery_tasks.main import celery_app
    celery_app.loader.import_default_modules()
    from celery_tasks.bench.tasks import noop

    # Open the pooled connection before the clock starts; delay() reuses it.
    with celery_app.producer_or_acquire() as producer:
        producer.connection.ensure_connection(max_retries=3)
    start = time.perf_counter()
    for _ in range(count):
        noop.delay()
    elapsed = time.perf_counter() - start
    # Close the pool's connections cleanly: on AMQP this waits for the
    # broker's close-ok, so every publish has arrived before we exit.
    celery_app.pool.force_close_all()
    print(f'{count} tasks in {elapsed:.3f} s: {count / elapsed:.1f} tasks/s', flush=True)


# --- brokers ----------------------------------------------------------------

class RedisBroker:
    """Queue depth and unacked count on a dedicated Redis database."""

    PRIORITY_SUFFIXES = ['', '\x06\x163', '\x06\x166', '\x06\x169']

    def __init__(self, url):
        import redis
        self.url = url
        self.client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        self.queues = set()

    def check_dedicated(self):
        keys = self.client.dbsize()
        if keys:
            sys.exit(f'error: {masked(self.url)} holds {keys} keys. The benchmark counts '
                     "kombu's shared 'unacked' hash, so it needs a database nobody else uses: "
                     'pass an empty one, e.g. redis://127.0.0.1:6379/15')

    def ready(self, queue):
        """Messages waiting in the queue (all four priority lists)."""
        pipe = self.client.pipeline(transaction=False)
        for suffix in self.PRIORITY_SUFFIXES:
            pipe.llen(queue + suffix)
        return sum(pipe.execute())

    def drained(self, queue):
        """Nothing waiting and nothing fetched-but-unacked: every task is done."""
        pipe = self.client.pipeline(transaction=False)
        for suffix in self.PRIORITY_SUFFIXES:
            pipe.llen(queue + suffix)
        pipe.hlen('unacked')
        counts = pipe.execute()
        return sum(counts) == 0

    def wait_acked(self, queue, timeout):
        return True   # drained() already covers unacked messages

    def delete(self, queue):
        self.queues.add(queue)
        self.client.delete(*[queue + s for s in self.PRIORITY_SUFFIXES],
                           f'_kombu.binding.{queue}', f'_kombu.binding_permanent.{queue}')

    def cleanup(self):
        """Delete what kombu left in our (checked-empty) database: bindings, unacked."""
        doomed = [k for pattern in ('_kombu.*', 'unacked*') for k in self.client.scan_iter(pattern)]
        for queue in self.queues:
            doomed += [queue + s for s in self.PRIORITY_SUFFIXES]
        if doomed:
            self.client.delete(*doomed)
        left = self.client.dbsize()
        if left:
            progress(f'note: {left} keys left in {masked(self.url)}: '
                     f'{[k.decode(errors="replace") for k in self.client.scan_iter(count=20)][:10]}')


class AmqpBroker:
    """Queue depth through pika's passive queue.declare (no management plugin)."""

    def __init__(self, url):
        import pika
        self.pika = pika
        parts = urlsplit(url)
        path = parts.path[1:] if parts.path.startswith('/') else parts.path
        self.vhost = unquote(path) if path not in ('', '/') else '/'
        self.params = pika.ConnectionParameters(
            host=parts.hostname or '127.0.0.1', port=parts.port or 5672,
            virtual_host=self.vhost,
            credentials=pika.PlainCredentials(unquote(parts.username or 'guest'),
                                              unquote(parts.password or 'guest')),
            # Idle for minutes while a worker drains: no heartbeats to miss.
            heartbeat=0, blocked_connection_timeout=30, socket_timeout=10)
        self.url = url
        self.connection = None
        self.channel = None
        self.rabbitmqctl = shutil.which('rabbitmqctl')

    def check_dedicated(self):
        self._channel()   # fail early if RabbitMQ is not reachable

    def _channel(self):
        if self.connection is None or self.connection.is_closed:
            self.connection = self.pika.BlockingConnection(self.params)
            self.channel = None
        if self.channel is None or self.channel.is_closed:
            self.channel = self.connection.channel()
        return self.channel

    def ready(self, queue):
        """Ready (not yet delivered) messages; 0 if the queue does not exist yet."""
        try:
            return self._channel().queue_declare(queue, passive=True).method.message_count
        except self.pika.exceptions.ChannelClosedByBroker:   # 404: not declared yet
            self.channel = None
            return 0

    def drained(self, queue):
        return self.ready(queue) == 0

    def unacked(self, queue):
        done = subprocess.run([self.rabbitmqctl, '-q', 'list_queues', '-p', self.vhost,
                               'name', 'messages_unacknowledged', '--no-table-headers'],
                              capture_output=True, text=True, timeout=30, check=False)
        for line in done.stdout.splitlines():
            fields = line.split('\t')
            if len(fields) == 2 and fields[0] == queue:
                return int(fields[1])
        return 0

    def wait_acked(self, queue, timeout):
        """After the queue shows 0 ready: wait until the worker acked its prefetch too."""
        if not self.rabbitmqctl:
            time.sleep(2)   # no way to look: give it the time a prefetch window takes
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.unacked(queue) == 0:
                return True
            time.sleep(0.5)
        return False

    def delete(self, queue):
        # Celery declares a direct exchange named after the queue; remove both.
        channel = self._channel()
        channel.queue_delete(queue)
        channel.exchange_delete(queue)

    def cleanup(self):
        if self.connection and self.connection.is_open:
            self.connection.close()


def broker_for(url):
    scheme = urlsplit(url).scheme
    if scheme in ('redis', 'rediss'):
        return RedisBroker(url)
    if scheme in ('amqp', 'pyamqp', 'amqps'):
        return AmqpBroker(url)
    sys.exit(f'error: unsupported broker {masked(url)}: use redis://host:port/db or amqp://user:pass@host:port//')


# --- processes ------------------------------------------------------------------

def worker_env(url, queue_type='classic'):
    # Both sides read the queue type from the environment: Python's
    # config.py (task_default_queue_type), our worker and send
    # (--queue-type), and Part 1's consumer (QUEUE_TYPE).
    env = dict(os.environ, CELERY_BROKER_URL=url,
               CELERY_TASK_DEFAULT_QUEUE_TYPE=queue_type, QUEUE_TYPE=queue_type)
    for name in ('CELERY_RESULT_BACKEND', 'CELERY_QUEUE', 'SMS_RECORD_KEY'):
        env.pop(name, None)   # no result backend (the blog has none), default routing
    return env


def run_for_rate(cmd, env, count, what, timeout):
    """Run a producer to completion; its rate is the '<n> tasks/s' it prints."""
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, env=env, cwd=PYDIR, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        sys.exit(f'error: {what} did not finish within {timeout:.0f} s: {" ".join(cmd)}')
    wall = time.perf_counter() - start
    match = RATE.search(done.stdout)
    if done.returncode != 0:
        sys.exit(f'error: {what} failed (exit {done.returncode}): {" ".join(cmd)}\n'
                 f'{done.stdout[-2000:]}{done.stderr[-2000:]}')
    if not match:
        progress(f'warning: {what} printed no "<n> tasks/s"; using wall time {wall:.2f} s')
        return count / wall
    return float(match.group(1).replace(',', ''))


def rss_kib(pid):
    """VmRSS of pid plus all its descendants, in KiB (0 if it is gone)."""
    total = 0
    try:
        with open(f'/proc/{pid}/status') as status:
            for line in status:
                if line.startswith('VmRSS:'):
                    total += int(line.split()[1])
                    break
        children = set()
        for tid in os.listdir(f'/proc/{pid}/task'):
            with open(f'/proc/{pid}/task/{tid}/children') as f:
                children.update(int(c) for c in f.read().split())
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return total
    return total + sum(rss_kib(child) for child in children)


def stop(proc):
    """SIGTERM (Celery: warm shutdown), SIGKILL to the whole group after 10 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # Seen with Celery's solo pool on AMQP: its blocking read can
            # delay the warm shutdown. Everything is acked by now, so a
            # SIGKILL loses nothing.
            progress(f'worker {proc.pid} still running 10 s after SIGTERM: SIGKILL')
    # The worker ran in its own session (start_new_session), so its process
    # group is exactly it and its children (e.g. prefork pool processes).
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


def time_drain(broker, proc, log, queue, n, timeout, label):
    """Watch a started worker drain n pre-loaded tasks from queue.

    Returns (tasks/s from its first task taken to the last one acked, peak
    RSS in KiB). Exits with the worker's last log lines if it dies.
    """
    first = end = None
    peak = 0
    next_rss = 0.0
    deadline = time.perf_counter() + timeout
    while True:
        if proc.poll() is not None:
            log.seek(0)
            sys.exit(f'error: {label} exited with {proc.returncode} while draining {queue}:\n'
                     + ''.join(log.readlines()[-30:]))
        now = time.perf_counter()
        if first is None and broker.ready(queue) < n:
            first = now          # the worker took its first task
        if first is not None and broker.drained(queue):
            end = time.perf_counter()
            break
        if now >= next_rss:
            peak = max(peak, rss_kib(proc.pid))
            next_rss = now + 0.1
        if now > deadline:
            sys.exit(f'error: {label} did not drain {n} tasks within '
                     f'{timeout:.0f} s (left: {broker.ready(queue)})')
        # 10 ms: 0.1 % of a 10 s drain, and the polling itself stays
        # under ~5 % of one core, which matters on a 2-core machine.
        time.sleep(0.01)
    peak = max(peak, rss_kib(proc.pid))
    if not broker.wait_acked(queue, 60):
        progress(f'warning: {label} still holds unacked messages 60 s after the queue emptied')
    return n / max(end - first, 1e-6), peak


# --- the benchmark --------------------------------------------------------------

class Bench:
    def __init__(self, args, url, queue_type='classic'):
        self.args = args
        self.url = url
        self.n = args.tasks
        self.broker = broker_for(url)
        self.env = worker_env(url, queue_type)
        self.timeout = args.drain_timeout or 120 + self.n / 100

    def fresh_queue(self, what):
        return f'bench-{what}-{uuid.uuid4().hex[:8]}'

    def wait_ready(self, queue, expected):
        """After a producer exits, the broker must hold all its messages."""
        deadline = time.monotonic() + 30
        while (got := self.broker.ready(queue)) != expected:
            if time.monotonic() > deadline:
                sys.exit(f'error: queue {queue} holds {got} messages, expected {expected}')
            time.sleep(0.05)

    # enqueue ---------------------------------------------------------------
    def enqueue_python(self, queue):
        env = dict(self.env, CELERY_QUEUE=queue)
        cmd = [sys.executable, os.path.abspath(__file__), '--python-enqueue', str(self.n)]
        rate = run_for_rate(cmd, env, self.n, 'python noop.delay() loop', self.timeout)
        self.wait_ready(queue, self.n)
        return rate

    def enqueue_rust(self, queue):
        cmd = [self.args.rust_bin, 'send', '--count', str(self.n), '--queue', queue,
               '--task', 'noop', '--broker', self.url]
        rate = run_for_rate(cmd, self.env, self.n, 'rust send', self.timeout)
        self.wait_ready(queue, self.n)
        return rate

    def measure_enqueue(self, label, send):
        queue = self.fresh_queue('enqueue')
        try:
            rate = send(queue)
        finally:
            self.broker.delete(queue)
        progress(f'  enqueue {label:<24} {rate:>10,.0f} tasks/s')
        return {'rate': rate}

    def measure_send_ceiling(self):
        """Two `send` processes at once into one queue: their summed rate."""
        queue = self.fresh_queue('ceiling')
        half = max(self.n // 2, 1)
        cmd = [self.args.rust_bin, 'send', '--count', str(half), '--queue', queue,
               '--task', 'noop', '--broker', self.url]
        try:
            procs = [subprocess.Popen(cmd, env=self.env, cwd=PYDIR, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True) for _ in range(2)]
            elapsed = []
            for proc in procs:
                out, _ = proc.communicate(timeout=self.timeout)
                match = ELAPSED.search(out)
                if proc.returncode != 0 or not match:
                    sys.exit(f'error: rust send failed (exit {proc.returncode}):\n{out[-2000:]}')
                elapsed.append(float(match.group(1)))
            self.wait_ready(queue, 2 * half)
            # Each reports its own time from its first publish to its last
            # confirm; they ran side by side, so the longer one spans both.
            rate = 2 * half / max(max(elapsed), 1e-6)
        finally:
            self.broker.delete(queue)
        progress(f'  enqueue {CEILING_SEND:<24} {rate:>10,.0f} tasks/s')
        return {'rate': rate}

    def measure_drain_ceiling(self):
        """Part 1's consumer with auto-ack on N pre-loaded Celery messages."""
        queue = self.fresh_queue('ceiling')
        try:
            self.enqueue_rust(queue)
            cmd = [self.args.consumer_bin, '--queue', queue, '--durable', '--auto-ack',
                   '--prefetch', '1000', '--count', str(self.n), '-l', 'warning',
                   '--amqp-url', self.url]
            done = subprocess.run(cmd, env=self.env, capture_output=True, text=True,
                                  timeout=self.timeout, check=False)
            match = re.search(r'([\d.]+) msgs/s', done.stderr)
            if done.returncode != 0 or not match:
                sys.exit(f'error: consumer failed (exit {done.returncode}):\n{done.stderr[-2000:]}')
            rate = float(match.group(1))
        finally:
            self.broker.delete(queue)
        progress(f'  drain   {CEILING_DRAIN:<24} {rate:>10,.0f} tasks/s')
        return {'rate': rate}

    # drain -----------------------------------------------------------------
    def worker_cmd(self, label, pool_args, queue):
        if label == RUST_WORKER:
            return [self.args.rust_bin, 'worker', '-l', 'info', '-Q', queue,
                    '--broker', self.url, '-c', RUST_CONCURRENCY]
        return [CELERY, '-A', 'celery_tasks.main', 'worker', '-l', 'info', '-Q', queue,
                '--without-mingle', '--without-gossip', '--without-heartbeat',
                '-n', f'{queue}@%h', *pool_args]

    def measure_drain(self, label, pool_args):
        queue = self.fresh_queue('drain')
        proc = None
        log = tempfile.NamedTemporaryFile('w+', prefix='celery-bench-', suffix='.log')
        try:
            # Pre-load with the fastest producer available.
            # (both wait until the broker holds all N)
            (self.enqueue_python if self.args.skip_rust else self.enqueue_rust)(queue)
            proc = subprocess.Popen(self.worker_cmd(label, pool_args, queue), cwd=PYDIR,
                                    env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            rate, peak = time_drain(self.broker, proc, log, queue, self.n, self.timeout, label)
        finally:
            if proc is not None:
                stop(proc)
            log.close()
            self.broker.delete(queue)
        progress(f'  drain   {label:<24} {rate:>10,.0f} tasks/s  peak RSS {peak / 1024:.1f} MB')
        return {'rate': rate, 'rss_mb': peak / 1024}

    # one transport -----------------------------------------------------------
    def run(self):
        self.broker.check_dedicated()
        samples = {}
        try:
            for round_no in range(1, self.args.rounds + 1):
                progress(f'{masked(self.url)}: round {round_no}/{self.args.rounds}, {self.n:,} tasks per step')
                steps = [('python noop.delay()', lambda: self.measure_enqueue(
                    'python noop.delay()', self.enqueue_python))]
                if not self.args.skip_rust:
                    steps.append(('rust send', lambda: self.measure_enqueue(
                        'rust send', self.enqueue_rust)))
                for label, pool_args in PYTHON_POOLS:
                    steps.append((label, lambda l=label, a=pool_args: self.measure_drain(l, a)))
                if not self.args.skip_rust:
                    steps.append((RUST_WORKER, lambda: self.measure_drain(RUST_WORKER, [])))
                if isinstance(self.broker, AmqpBroker) and self.args.consumer_bin:
                    steps.append((CEILING_SEND, self.measure_send_ceiling))
                    steps.append((CEILING_DRAIN, self.measure_drain_ceiling))
                for label, step in steps:
                    samples.setdefault(label, []).append(step())
        finally:
            self.broker.cleanup()
        return {label: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
                for label, runs in samples.items()}


def print_table(url, n, rounds, medians, queue_type='classic'):
    kind = f', {queue_type} queues' if url.startswith('amqp') else ''
    print(f'\n{masked(url)}{kind}: {n:,} noop tasks per step, median of {rounds} round(s)')
    print(f'{"step":<9}{"who":<24}{"tasks/s":>12}{"tasks/min":>14}{"peak RSS MB":>13}  vs python')
    py_enqueue = medians['python noop.delay()']['rate']
    drains = [label for label, _ in PYTHON_POOLS]
    best_py = max(drains, key=lambda label: medians[label]['rate'])
    rows = [('enqueue', 'python noop.delay()'), ('enqueue', 'rust send'), ('enqueue', CEILING_SEND)]
    rows += [('drain', label) for label in drains] + [('drain', RUST_WORKER), ('drain', CEILING_DRAIN)]
    for step, label in rows:
        if label not in medians:
            continue
        m = medians[label]
        rss = f'{m["rss_mb"]:.1f}' if 'rss_mb' in m else '-'
        if label == 'rust send':
            versus = f'{m["rate"] / py_enqueue:.1f}x python delay()'
        elif label == RUST_WORKER:
            versus = f'{m["rate"] / medians[best_py]["rate"]:.1f}x best python ({best_py})'
        elif label == CEILING_SEND and 'rust send' in medians:
            ratio = m['rate'] / medians['rust send']['rate']
            versus = f'{ratio:.2f}x one rust send' + (
                ': the broker, not the sender, sets the pace' if ratio < 1.25 else '')
        elif label == CEILING_DRAIN and RUST_WORKER in medians:
            versus = (f'broker ceiling: the rust worker drains at '
                      f'{medians[RUST_WORKER]["rate"] / m["rate"]:.0%} of it')
        elif label == best_py:
            versus = 'best python'
        else:
            versus = ''
        print(f'{step:<9}{label:<24}{m["rate"]:>12,.0f}{m["rate"] * 60:>14,.0f}{rss:>13}  {versus}')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--broker', action='append', metavar='URL',
                   help='redis://127.0.0.1:6379/<empty db> or amqp://guest:guest@127.0.0.1:5672// '
                        '(repeat to benchmark both in one run)')
    p.add_argument('--rust-bin', metavar='PATH', help='the celery-sms-demo binary (send / worker)')
    p.add_argument('--tasks', type=int, default=20000, metavar='N', help='tasks per step (default 20000)')
    p.add_argument('--rounds', type=int, default=3, help='rounds; the table shows medians (default 3)')
    p.add_argument('--consumer-bin', metavar='PATH',
                   help="Part 1's consumer binary: adds the RabbitMQ ceiling rows")
    p.add_argument('--skip-rust', action='store_true', help='Python measurements only')
    p.add_argument('--drain-timeout', type=float, metavar='SECS',
                   help='give up on a drain after this long (default 120 + N/100)')
    p.add_argument('--queue-type', action='append', choices=['classic', 'quorum'],
                   help='RabbitMQ queue type (repeat to compare both in one run; default classic)')
    p.add_argument('--python-enqueue', type=int, metavar='N', help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.python_enqueue is not None:   # the child process of enqueue_python()
        python_enqueue(args.python_enqueue)
        return
    if not args.broker:
        p.error('--broker is required')
    if not args.skip_rust and not args.rust_bin:
        p.error('--rust-bin is required (or --skip-rust for the Python half only)')
    if args.rust_bin:
        args.rust_bin = os.path.abspath(args.rust_bin)
    if args.consumer_bin:
        args.consumer_bin = os.path.abspath(args.consumer_bin)
    if args.consumer_bin and args.skip_rust:
        p.error('--consumer-bin needs the rust binary too (its send pre-loads the queue)')
    if args.tasks < 1 or args.rounds < 1:
        p.error('--tasks and --rounds must be positive')
    if not os.path.exists(CELERY):
        p.error(f'{CELERY} not found: run this with the venv python (scripts/python-env)')

    queue_types = args.queue_type or ['classic']
    results = [(url, queue_type, Bench(args, url, queue_type).run())
               for url in args.broker
               for queue_type in (queue_types if url.startswith('amqp') else ['classic'])]
    import celery
    import kombu
    load = ', '.join(f'{x:.1f}' for x in os.getloadavg())
    print(f'Celery {celery.__version__} (kombu {kombu.__version__}), Python {sys.version.split()[0]}, '
          f'{os.cpu_count()} CPUs, load average {load} at the end')
    for url, queue_type, medians in results:
        print_table(url, args.tasks, args.rounds, medians, queue_type)


if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:   # workers are stopped and queues deleted by then
        sys.exit('interrupted')
