"""SMS tasks per second against a gateway that answers after 100 ms, and the
noop drain of our default worker against `-c 128` (bench/sms.sh runs it).

The blog's task waits on an HTTP gateway. Per contender, in one run and on
one Redis: N SMS tasks are pre-loaded (with our `send --count`), then the
worker is started with its *default* pool and drains them, every task making
the real Ronglian call (a signed POST) to bench/fake_ronglian.py, which
answers after 100 ms. Python's task makes the same call with urllib, as the
Ronglian SDK does.

* ours, as the blog's command starts it: `worker -l info`
* Python Celery's default worker: `worker -l info` (prefork, one process per CPU)
* Python's pools for I/O: `--pool threads -c 100`, `--pool gevent -c 500`

Then the noop drain of our default worker and of `-c 128`, the figure the
Celery benchmark uses. Each figure is the median of --rounds rounds.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from celery_bench import CELERY, PYDIR, RedisBroker, progress, stop, time_drain, worker_env  # noqa: E402

GATEWAY_ENV = {
    'RONGLIAN_ACCOUNT_SID': '8aaf0708697b6beb0169c1f12db32e2a',
    'RONGLIAN_AUTH_TOKEN': 'bench-token',
    'RONGLIAN_APP_ID': '8aaf0708697b6beb0169c1f12e082e30',
}


def python_worker(pool_args):
    return lambda queue: [CELERY, '-A', 'celery_tasks.main', 'worker', '-l', 'info', '-Q', queue,
                          '--without-mingle', '--without-gossip', '--without-heartbeat',
                          '-n', f'{queue}@%h', *pool_args]


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--broker', required=True, help='an empty Redis database')
    p.add_argument('--rust-bin', required=True)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--delay', type=float, default=0.1, help="the gateway's answer time (s)")
    args = p.parse_args()
    args.rust_bin = os.path.abspath(args.rust_bin)   # the workers run in the Python app's directory

    broker = RedisBroker(args.broker)
    broker.check_dedicated()
    gateway = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), 'fake_ronglian.py'),
                                '--delay', str(args.delay)], stdout=subprocess.PIPE, text=True)
    port = gateway.stdout.readline().split()[-1]
    env = dict(worker_env(args.broker), SMS_GATEWAY='ronglian',
               RONGLIAN_BASE_URL=f'http://127.0.0.1:{port}', **GATEWAY_ENV)
    # The "already sent" records go to the bench's own (checked empty) database.
    env['SMS_SENT_RECORDS_URL'] = args.broker
    rust = lambda *extra: lambda queue: [args.rust_bin, 'worker', '-l', 'info', '-Q', queue,  # noqa: E731
                                         '--broker', args.broker, *extra]
    # (label, worker command, task, tasks per round): N is sized so each
    # drain lasts a few seconds at the rate that contender reaches.
    contenders = [
        ('ours, default (worker -l info)', rust(), 'SMS', 5000),
        ('python, default (prefork)', python_worker([]), 'SMS', 200),
        ('python, threads -c 100', python_worker(['--pool', 'threads', '-c', '100']), 'SMS', 2000),
        ('python, gevent -c 500', python_worker(['--pool', 'gevent', '-c', '500']), 'SMS', 5000),
        ('ours, default: noop', rust(), 'noop', 20000),
        ('ours, -c 128: noop', rust('-c', '128'), 'noop', 20000),
    ]
    samples = {label: [] for label, *_ in contenders}
    try:
        for round_number in range(1, args.rounds + 1):
            progress(f'round {round_number}/{args.rounds}')
            for label, command, task, n in contenders:
                queue = f'bench-sms-{uuid.uuid4().hex[:8]}'
                preload = [args.rust_bin, 'send', '--count', str(n), '--queue', queue, '--task', task,
                           '--broker', args.broker]
                if task == 'SMS':
                    preload[2:2] = ['13800000000', '123456']
                log = tempfile.NamedTemporaryFile('w+', prefix='sms-bench-', suffix='.log')
                proc = None
                try:
                    subprocess.run(preload, env=env, check=True, capture_output=True, timeout=120)
                    proc = subprocess.Popen(command(queue), cwd=PYDIR, env=env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
                    rate, _ = time_drain(broker, proc, log, queue, n, 300, label)
                finally:
                    if proc is not None:
                        stop(proc)
                    log.close()
                    broker.delete(queue)
                samples[label].append(rate)
                progress(f'  {label:<34} {rate:>9,.0f} tasks/s')
    finally:
        gateway.terminate()
        broker.cleanup()
        import redis
        records = redis.Redis.from_url(env['SMS_SENT_RECORDS_URL'])
        for key in records.scan_iter('sms-sent-*', count=1000):
            records.delete(key)

    medians = {label: statistics.median(rates) for label, rates in samples.items()}
    ours = medians['ours, default (worker -l info)']
    python_default = medians['python, default (prefork)']
    python_best = max(medians['python, threads -c 100'], medians['python, gevent -c 500'])
    print(f'\nSMS tasks/s, gateway answering after {args.delay * 1000:.0f} ms; noop drain; '
          f'Redis; median of {args.rounds}:\n')
    print('| worker | tasks/s |')
    print('|---|---|')
    for label, rate in medians.items():
        print(f'| {label} | {rate:,.0f} |')
    noop_share = medians['ours, default: noop'] / medians['ours, -c 128: noop']
    print(f'\nours ÷ Python default: {ours / python_default:.1f}× (target ≥ 50×)')
    print(f'ours ÷ Python best pool: {ours / python_best:.1f}× (target ≥ 2×)')
    print(f'noop drain, default ÷ -c 128: {noop_share:.0%} (target ≥ 80%)')


if __name__ == '__main__':
    main()
