"""Benchmark: our Rust Celery worker vs rusty-celery (crate ``celery`` 0.5), same run.

A user who wants a Celery worker in Rust weighs ours against rusty-celery, the
established crate. This script races the two on the same pre-loaded messages,
on Redis and on RabbitMQ, and then checks what each loses to a ``kill -9``:

  drain    N pre-loaded ``noop`` tasks (``RUST send --count N --queue Q --task noop``),
           clock from the first task taken off the queue to the last one
           acknowledged (bench/celery_bench.py's ``time_drain``), for:
             rusty   bench/peers/rusty-worker: the crate's own consume loop,
                     prefetch 512, its default ack-before-run, env_logger at info
             ours    RUST worker -l info -Q Q --broker URL -c 128 (prefetch 4 x 128 = 512)
           and the worker's peak resident memory while it drains. Both log one
           ``Task noop[<id>] succeeded`` line per task; the table's ``ran`` column
           counts them, so a worker that acks messages without running them
           (e.g. ones it cannot parse) cannot look fast.
  kill -9  K tasks (default 5,000) pre-loaded, the worker started and killed
           with SIGKILL the moment the queue's ready count drops below
           ``--kill-below`` (default 4,000), then:
             ready     messages back in (or still in) the queue; on RabbitMQ
                       after the broker has returned the dead connection's
                       unacked messages
             unacked   Redis: entries in kombu's ``unacked`` hash, which our
                       worker (and Python Celery) restores at its next start
             stranded  Redis: entries rusty-celery left in its own
                       ``_celery.<queue>_process_map`` hash; nothing reads that
                       hash back (not the crate, not kombu), so they count as lost
             done      ``succeeded`` lines the worker logged before it died
             lost      K - ready - unacked - done: messages gone without running.
                       Negative means tasks that ran and will run again (their
                       ack had not reached the broker): at-least-once, not loss.

How "done" is detected for rusty-celery on Redis: the crate RPOPs a message
and parks it in its ``_celery.<queue>_process_map`` hash until it acks, not in
kombu's ``unacked`` hash, so the drain also waits for that hash to empty.

Redis db must be empty (``RedisBroker.check_dedicated``): the ``unacked`` hash is
shared by every queue of a database. Everything the runs create (queues,
bindings, the unacked hash and index, the process maps; on RabbitMQ the queues
and their exchanges) is deleted at the end, also after a failure.

Usage (bench/peers.sh builds both workers and passes these):

  .venv/bin/python bench/peers_bench.py --broker redis://127.0.0.1:6379/15 \\
        --broker amqp://guest:guest@127.0.0.1:5672// \\
        --rust-bin target/release/celery-sms-demo \\
        --rusty-bin target/peers/target/release/rusty-worker --rusty-version 0.5.5

The tables go to stdout, progress to stderr.
"""
import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from celery_bench import (AmqpBroker, RedisBroker, broker_for, masked, progress,  # noqa: E402
                          run_for_rate, stop, time_drain, worker_env)

OURS_CONCURRENCY = '128'
RUSTY_PREFETCH = '512'   # = ours' 4 x 128, and within the crate's u16
SUCCEEDED = re.compile(r'Task noop\[([^\]]+)\] succeeded')


class PeersRedis(RedisBroker):
    """RedisBroker that also sees rusty-celery's own in-flight hash."""

    def process_map(self, queue):
        return f'_celery.{queue}_process_map'

    def in_process_map(self, queue):
        return self.client.hlen(self.process_map(queue))

    def unacked_entries(self):
        return self.client.hlen('unacked')

    def drained(self, queue):
        return super().drained(queue) and self.in_process_map(queue) == 0

    def delete(self, queue):
        super().delete(queue)
        self.client.delete(self.process_map(queue))

    def cleanup(self):
        # The database was checked empty, so every `_celery.*` key is a run's.
        doomed = list(self.client.scan_iter('_celery.*'))
        if doomed:
            self.client.delete(*doomed)
        super().cleanup()


def peers_broker_for(url):
    broker = broker_for(url)
    return PeersRedis(url) if isinstance(broker, RedisBroker) else broker


def succeeded_ids(log):
    log.flush()
    log.seek(0)
    return {match.group(1) for match in SUCCEEDED.finditer(log.read())}


class Peers:
    def __init__(self, args, url):
        self.args = args
        self.url = url
        self.broker = peers_broker_for(url)
        self.env = worker_env(url)
        self.timeout = args.drain_timeout or 120 + args.tasks / 100
        self.rusty = f'rusty-celery {args.rusty_version}'
        self.ours = f'ours -c {OURS_CONCURRENCY}'
        self.broker_name = 'redis' if isinstance(self.broker, RedisBroker) else 'rabbitmq'

    def fresh_queue(self, what):
        return f'bench-peers-{what}-{uuid.uuid4().hex[:8]}'

    def preload(self, queue, n):
        """Our `send`, then wait until the broker holds all n."""
        cmd = [self.args.rust_bin, 'send', '--count', str(n), '--queue', queue,
               '--task', 'noop', '--broker', self.url]
        run_for_rate(cmd, self.env, n, 'rust send', self.timeout)
        deadline = time.monotonic() + 30
        while (got := self.broker.ready(queue)) != n:
            if time.monotonic() > deadline:
                sys.exit(f'error: queue {queue} holds {got} messages, expected {n}')
            time.sleep(0.05)

    def start(self, who, queue, log):
        if who == self.ours:
            cmd = [self.args.rust_bin, 'worker', '-l', 'info', '-Q', queue,
                   '--broker', self.url, '-c', OURS_CONCURRENCY]
            env = self.env
        else:
            cmd = [self.args.rusty_bin]
            env = dict(self.env, CELERY_QUEUE=queue, PREFETCH=RUSTY_PREFETCH, RUST_LOG='info')
        # Its own session: stop() and the kill below reach exactly its group.
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def measure_drain(self, who):
        n = self.args.tasks
        queue = self.fresh_queue('drain')
        proc = None
        log = tempfile.NamedTemporaryFile('w+', prefix='peers-bench-', suffix='.log')
        try:
            self.preload(queue, n)
            proc = self.start(who, queue, log)
            rate, peak = time_drain(self.broker, proc, log, queue, n, self.timeout, who)
        finally:
            if proc is not None:
                stop(proc)
            ran = len(succeeded_ids(log))
            log.close()
            self.broker.delete(queue)
        progress(f'  drain   {who:<22} {rate:>10,.0f} tasks/s  peak RSS {peak / 1024:.1f} MB'
                 f'  ran {ran:,}/{n:,}')
        if ran != n:
            progress(f'  warning: {who} logged {ran:,} of {n:,} tasks as succeeded')
        return {'rate': rate, 'rss_mb': peak / 1024, 'ran': ran}

    def settle_after_kill(self, queue):
        """RabbitMQ: wait until the dead connection's unacked messages are back."""
        if not isinstance(self.broker, AmqpBroker):
            return ''
        if not self.broker.rabbitmqctl:
            time.sleep(3)
            return ' (no rabbitmqctl: waited 3 s for the requeue)'
        deadline = time.monotonic() + 30
        while (unacked := self.broker.unacked(queue)) and time.monotonic() < deadline:
            time.sleep(0.2)
        return f' ({unacked} still unacked after 30 s)' if unacked else ''

    def kill_test(self, who):
        k = self.args.kill_tasks
        queue = self.fresh_queue('kill')
        proc = None
        log = tempfile.NamedTemporaryFile('w+', prefix='peers-kill-', suffix='.log')
        try:
            self.preload(queue, k)
            proc = self.start(who, queue, log)
            deadline = time.monotonic() + self.timeout
            while (ready := self.broker.ready(queue)) >= self.args.kill_below:
                if proc.poll() is not None:
                    log.seek(0)
                    sys.exit(f'error: {who} exited with {proc.returncode} before the kill:\n'
                             + ''.join(log.readlines()[-30:]))
                if time.monotonic() > deadline:
                    sys.exit(f'error: {who} took no tasks within {self.timeout:.0f} s (ready {ready})')
                time.sleep(0.005)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            note = self.settle_after_kill(queue)
            done = len(succeeded_ids(log))
            row = {'ready_at_kill': ready, 'ready': self.broker.ready(queue), 'done': done,
                   'unacked': None, 'stranded': None, 'note': note}
            if isinstance(self.broker, PeersRedis):
                row['unacked'] = self.broker.unacked_entries()
                row['stranded'] = self.broker.in_process_map(queue)
        finally:
            if proc is not None:
                stop(proc)   # only reaps it: it is dead already
            log.close()
            self.broker.delete(queue)
            if isinstance(self.broker, PeersRedis):
                # This kill's restorable entries belong to this queue alone
                # (one queue at a time): the next test must start from zero.
                self.broker.client.delete('unacked', 'unacked_index')
        row['lost'] = k - row['ready'] - (row['unacked'] or 0) - done
        progress(f'  kill -9 {who:<22} ready {row["ready"]:,}  unacked {row["unacked"]}  '
                 f'stranded {row["stranded"]}  done {done:,}  lost {row["lost"]:,}{note}')
        return row

    def run(self):
        self.broker.check_dedicated()
        samples = {}
        kills = {}
        try:
            for round_no in range(1, self.args.rounds + 1):
                progress(f'{masked(self.url)}: round {round_no}/{self.args.rounds}, '
                         f'{self.args.tasks:,} tasks per drain')
                for who in (self.rusty, self.ours):
                    samples.setdefault(who, []).append(self.measure_drain(who))
            progress(f'{masked(self.url)}: kill -9 with {self.args.kill_tasks:,} tasks, '
                     f'at ready < {self.args.kill_below:,}')
            for who in (self.rusty, self.ours):
                kills[who] = self.kill_test(who)
        finally:
            self.broker.cleanup()
        medians = {who: {'rate': statistics.median(s['rate'] for s in runs),
                         'rss_mb': statistics.median(s['rss_mb'] for s in runs),
                         'ran': min(s['ran'] for s in runs)}
                   for who, runs in samples.items()}
        return medians, kills


def print_tables(args, results):
    print(f'\n{args.tasks:,} pre-loaded noop tasks per drain, median of {args.rounds} round(s); '
          f'"ran" = tasks the worker logged as succeeded (fewest over the rounds)\n')
    print('| broker | worker | tasks/s | peak RSS MB | ran |')
    print('|---|---|---:|---:|---:|')
    ratios = []
    for peers, (medians, _) in results:
        for who in (peers.rusty, peers.ours):
            m = medians[who]
            print(f'| {peers.broker_name} | {who} | {m["rate"]:,.0f} | {m["rss_mb"]:.1f} '
                  f'| {m["ran"]:,} |')
        rusty, ours = medians[peers.rusty], medians[peers.ours]
        ratios.append(f'{peers.broker_name}: ours/rusty = {ours["rate"] / rusty["rate"]:.2f}x tasks/s, '
                      f'{ours["rss_mb"] / rusty["rss_mb"]:.2f}x peak RSS')
    print()
    for line in ratios:
        print(line)

    print(f'\nkill -9: {args.kill_tasks:,} tasks pre-loaded, SIGKILL once fewer than '
          f'{args.kill_below:,} were ready; lost = {args.kill_tasks:,} - ready - unacked - done\n')
    print('| broker | worker | ready at kill | ready after | unacked (restored at start) '
          '| stranded (never restored) | done (logged) | lost |')
    print('|---|---|---:|---:|---:|---:|---:|---:|')
    notes = []
    for peers, (_, kills) in results:
        for who in (peers.rusty, peers.ours):
            r = kills[who]
            unacked = '-' if r['unacked'] is None else f'{r["unacked"]:,}'
            stranded = '-' if r['stranded'] is None else f'{r["stranded"]:,}'
            print(f'| {peers.broker_name} | {who} | {r["ready_at_kill"]:,} | {r["ready"]:,} '
                  f'| {unacked} | {stranded} | {r["done"]:,} | {r["lost"]:,} |')
            if r['note']:
                notes.append(f'{peers.broker_name} {who}:{r["note"]}')
    print('\nRabbitMQ: "ready after" includes the unacked messages the broker returned '
          'when the connection died.\nRedis: rusty-celery keeps taken messages in '
          '_celery.<queue>_process_map, which nothing restores, so "stranded" is part of "lost".')
    print('Negative lost = tasks that ran and will run again (at-least-once).')
    for note in notes:
        print(f'note: {note}')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--broker', action='append', required=True, metavar='URL',
                   help='redis://127.0.0.1:6379/<empty db> or amqp://guest:guest@127.0.0.1:5672// (repeatable)')
    p.add_argument('--rust-bin', required=True, metavar='PATH', help='our celery-sms-demo binary')
    p.add_argument('--rusty-bin', required=True, metavar='PATH', help='the rusty-celery worker binary')
    p.add_argument('--rusty-version', default='0.5', help='the crate version, for the table')
    p.add_argument('--tasks', type=int, default=20000, metavar='N', help='tasks per drain (default 20000)')
    p.add_argument('--rounds', type=int, default=3, help='rounds; the table shows medians (default 3)')
    p.add_argument('--kill-tasks', type=int, default=5000, metavar='K', help='tasks per kill -9 test')
    p.add_argument('--kill-below', type=int, default=4000, metavar='R',
                   help='SIGKILL once fewer than R tasks are ready (default 4000)')
    p.add_argument('--drain-timeout', type=float, metavar='SECS',
                   help='give up on a drain after this long (default 120 + N/100)')
    args = p.parse_args()
    if args.tasks < 1 or args.rounds < 1 or not 0 < args.kill_below < args.kill_tasks:
        p.error('--tasks and --rounds must be positive, and 0 < --kill-below < --kill-tasks')
    args.rust_bin = os.path.abspath(args.rust_bin)
    args.rusty_bin = os.path.abspath(args.rusty_bin)

    results = []
    for url in args.broker:
        peers = Peers(args, url)
        results.append((peers, peers.run()))
    load = ', '.join(f'{x:.1f}' for x in os.getloadavg())
    print(f'rusty-celery (crate celery) {args.rusty_version} vs ours, {os.cpu_count()} CPUs, '
          f'load average {load} at the end')
    print_tables(args, results)


if __name__ == '__main__':
    try:
        main()
    except KeyboardInterrupt:   # workers are stopped and queues deleted by then
        sys.exit('interrupted')
