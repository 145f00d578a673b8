"""The soak run with faults (bench/soak.sh runs it; see the README).

For SOAK_SECONDS (default 600) it keeps a steady stream of the blog's SMS task
flowing on both brokers at once:

* Redis: a private redis-server of its own (a free port, AOF fsynced on every
  write, so a kill -9 loses nothing it acknowledged);
* RabbitMQ: the machine's broker, on queues of the run's own.

Per broker: our `send --count --rate --ids` and Python's delay() feed one
queue; two of our workers and one Python worker (solo pool) drain it. Results
go to a second private redis-server that no fault touches.

Every 30 to 60 s one fault, picked at random (the seed is printed):

* kill9     -- kill -9 one of our workers; it is started again 1 s later;
* close     -- rabbitmqctl close_connection of one of our AMQP workers' connections;
* redis     -- kill -9 the private Redis broker, start it again 2 to 5 s later;
* partition -- cut one of our workers off its broker for 12 to 16 s: its
  connection runs through a relay of ours (Blackhole) that stops passing
  bytes, the way a network partition does, without closing anything.

Only our own processes are faulted: the Python worker is there to share the
queues, and its own losses on a kill -9 (Celery acks early by default) would
say nothing about ours. For the same reason the Redis broker's Python worker
steps aside (a warm stop) while that Redis is crashed: kombu pops with BRPOP
and records the message as unacked in a second command, and a crash between
the two loses it on the Python side. The partition is made in user space rather than in
a network namespace: RabbitMQ listens on 127.0.0.1 only, so a namespaced
worker would need a relay anyway, and the relay alone cuts the connection
without touching the machine's network.

At the end it stops the producers, waits until every sent task ran (or 180 s
pass), stops the workers and prints: tasks sent, run, lost (must be 0) and
duplicates per broker; the longest gap with no task finishing after each
fault; each worker's RSS at its start and at its end. It checks that every
fault was logged by the workers it hit -- one warning when the connection
was lost, one line when it was back, no flood -- and exits non-zero if a task
was lost or a check failed.
"""
import argparse
import datetime
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PYTHON_APP = os.path.join(ROOT, "celery-sms-demo", "python")
SUCCEEDED = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): [A-Z]+/[^\]]+\] Task SMS\[([0-9a-f-]+)\] succeeded in ")
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): ([A-Z]+)/")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def log(text):
    print(f"[soak {time.strftime('%H:%M:%S')}] {text}", flush=True)


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stamp_time(text):
    """The epoch seconds of a Celery log line's local timestamp."""
    moment = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f")
    return moment.timestamp()


class Aborted(Exception):
    """The run cannot go on (a producer or worker died): it fails."""


class Process:
    """A child whose output lines are collected (with the time each was read)."""

    def __init__(self, name, args, env=None, cwd=None):
        self.name = name
        self.args = args
        self.lines = []  # (read at, stream, line)
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.child = subprocess.Popen(
            args, env=full_env, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
        )
        self.started = time.time()
        self.readers = [
            threading.Thread(target=self._read, args=(self.child.stdout, "out"), daemon=True),
            threading.Thread(target=self._read, args=(self.child.stderr, "err"), daemon=True),
        ]
        for reader in self.readers:
            reader.start()

    def _read(self, stream, which):
        for line in stream:
            self.lines.append((time.time(), which, line.rstrip("\n")))

    def out(self):
        return [line for _, which, line in self.lines if which == "out"]

    def log_lines(self):
        return [(at, line) for at, which, line in self.lines if which == "err"]

    def alive(self):
        return self.child.poll() is None

    def wait_for(self, needle, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if any(needle in line for _, _, line in self.lines):
                return True
            if not self.alive():
                return False
            time.sleep(0.05)
        return False

    def rss_kb(self):
        try:
            with open(f"/proc/{self.child.pid}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def signal(self, number):
        try:
            self.child.send_signal(number)
        except ProcessLookupError:
            pass

    def stop(self, seconds=30):
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.child.wait(seconds)
            except subprocess.TimeoutExpired:
                self.child.kill()
                self.child.wait()
        for reader in self.readers:
            reader.join(5)


class Blackhole:
    """A TCP relay in front of a broker that can stop passing bytes.

    While cut, whatever either side sends is held (the connections stay
    open, nothing is refused): to both ends it looks like a network that
    drops everything. Heartbeats then go missing, and the side that notices
    first gives up on the connection, as it would on a real partition.
    """

    def __init__(self, target_port):
        self.target_port = target_port
        self.passing = threading.Event()
        self.passing.set()
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            client, _ = self.listener.accept()
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                self.passing.wait()
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self, seconds):
        self.passing.clear()
        time.sleep(seconds)
        self.passing.set()


class PrivateRedis:
    """A redis-server of the run's own, persisted to `directory`."""

    def __init__(self, directory, port):
        self.directory, self.port, self.process = directory, port, None
        os.makedirs(directory, exist_ok=True)

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", self.directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.2) as connection:
                    connection.sendall(b"PING\r\n")
                    if connection.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"redis-server on port {self.port} did not start")

    def crash(self):
        self.process.kill()
        self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait()


class Broker:
    """One broker's queue, producers and workers."""

    def __init__(self, kind, url, python_url, queue):
        self.kind, self.url, self.python_url, self.queue = kind, url, python_url, queue
        self.workers = {}  # slot -> [Process, ...] (a restart appends)
        self.python_workers = []  # one per start: stopped around each Redis crash
        self.producers = []


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", required=True, help="the release celery-sms-demo binary")
    parser.add_argument("--python", required=True, help="the venv's python")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/%2f")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("SOAK_SECONDS", 600)))
    parser.add_argument("--rate", type=float, default=float(os.environ.get("SOAK_RATE", 20)),
                        help="tasks per second per producer (four producers in all)")
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SOAK_SEED", time.time())))
    options = parser.parse_args()
    rng = random.Random(options.seed)
    run_id = uuid.uuid4().hex[:8]
    scratch = tempfile.mkdtemp(prefix=f"soak-{run_id}-")
    broker_redis = PrivateRedis(os.path.join(scratch, "broker"), free_port())
    results_redis = PrivateRedis(os.path.join(scratch, "results"), free_port())
    broker_redis.start()
    results_redis.start()
    results = f"redis://127.0.0.1:{results_redis.port}/0"
    redis_url = f"redis://127.0.0.1:{broker_redis.port}/0"
    brokers = [
        Broker("redis", redis_url, redis_url, f"soak-{run_id}-redis"),
        Broker("amqp", options.amqp, options.amqp.replace("/%2f", "//").replace("/%2F", "//"),
               f"soak-{run_id}-amqp"),
    ]
    def everything():
        log(f"seed {options.seed}; {options.seconds:.0f} s; {options.rate:g} tasks/s per producer, "
            f"{4 * options.rate:g} tasks/s in all; Redis broker :{broker_redis.port}, results :{results_redis.port}")

        # Worker "a" of each broker reaches it through a relay that a partition
        # fault can cut. Over AMQP with 5 s heartbeats, so that a cut connection
        # is noticed within the cut (RabbitMQ's default is 60 s).
        relays = {
            "redis": Blackhole(broker_redis.port),
            "amqp": Blackhole(amqp_port(options.amqp)),
        }

        def url_of(broker, slot):
            if slot != "a":
                return broker.url
            relay = relays[broker.kind].port
            if broker.kind == "redis":
                return f"redis://127.0.0.1:{relay}/0"
            return re.sub(r"@([^/:]+):\d+/", f"@127.0.0.1:{relay}/", broker.url) + "?heartbeat=5"

        def start_worker(broker, slot):
            name = f"soak-{broker.kind}-{slot}-{run_id}@{socket.gethostname()}"
            process = Process(
                f"ours {broker.kind} {slot}",
                [options.demo, "worker", "-l", "info", "-Q", broker.queue, "-n", name,
                 "--broker", url_of(broker, slot), "--result-backend", results,
                 "--connect-timeout", "120", "--visibility-timeout", "30"],
                env={"SMS_GATEWAY": "console", "CELERY_BROKER_URL": "", "CELERY_RESULT_BACKEND": ""},
            )
            process.node = name
            if not process.wait_for(" ready.", 60):
                raise Aborted(f"our {broker.kind} worker {slot} did not start:\n" +
                                 "\n".join(line for _, line in process.log_lines()[-20:]))
            broker.workers.setdefault(slot, []).append(process)
            return process

        def start_python_worker(broker):
            celery = os.path.join(os.path.dirname(options.python), "celery")
            process = Process(
                f"python {broker.kind}",
                [celery, "-A", "celery_tasks.main", "worker", "-l", "info", "-Q", broker.queue,
                 "--pool", "solo", "-n", f"py-soak-{broker.kind}-{run_id}@%h",
                 "--without-mingle", "--without-gossip", "--without-heartbeat"],
                env={"CELERY_BROKER_URL": broker.python_url, "CELERY_RESULT_BACKEND": results},
                cwd=PYTHON_APP,
            )
            if not process.wait_for(" ready.", 60):
                raise Aborted(f"the Python {broker.kind} worker did not start")
            broker.python_workers.append(process)

        for broker in brokers:
            for slot in ("a", "b"):
                start_worker(broker, slot)
            start_python_worker(broker)
        time.sleep(5)  # RSS at the start: once the workers have settled
        start_rss = {}
        for broker in brokers:
            for slot, lives in broker.workers.items():
                start_rss[(broker.kind, slot)] = lives[0].rss_kb()

        for broker in brokers:
            broker.producers.append(Process(
                f"send {broker.kind}",
                [options.demo, "send", "13800000000", "123456", "--queue", broker.queue,
                 "--broker", broker.url, "--count", "1000000000", "--rate", str(options.rate),
                 "--ids", "--connect-timeout", "120", "-l", "warning"],
                env={"CELERY_BROKER_URL": "", "CELERY_RESULT_BACKEND": ""},
            ))
            broker.producers.append(Process(
                f"delay {broker.kind}",
                [options.python, os.path.join(ROOT, "bench", "soak_delay.py"), broker.queue, str(options.rate)],
                env={"CELERY_BROKER_URL": broker.python_url, "CELERY_RESULT_BACKEND": ""},
            ))

        faults = []  # (time, kind, broker kind, target)
        started = time.time()
        next_fault = started + rng.uniform(30, 60)
        while time.time() - started < options.seconds:
            for broker in brokers:
                for producer in broker.producers:
                    if not producer.alive():
                        raise Aborted(f"{producer.name} ended:\n" +
                                         "\n".join(line for _, line in producer.log_lines()[-20:]))
            if time.time() < next_fault:
                time.sleep(0.2)
                continue
            kind = rng.choice(["kill9", "close", "redis", "partition"])
            if kind == "kill9":
                broker = rng.choice(brokers)
                slot = rng.choice(sorted(broker.workers))
                victim = broker.workers[slot][-1]
                faults.append((time.time(), kind, broker.kind, victim.name))
                log(f"fault: kill -9 {victim.name} (pid {victim.child.pid})")
                victim.signal(signal.SIGKILL)
                victim.child.wait()
                time.sleep(1)
                start_worker(broker, slot)
            elif kind == "close":
                broker = brokers[1]
                slot = rng.choice(sorted(broker.workers))
                victim = broker.workers[slot][-1]
                closed = close_connections(f"{victim.node} consumer")
                faults.append((time.time(), kind, broker.kind, victim.name))
                log(f"fault: rabbitmqctl close_connection of {victim.name}'s consumer ({closed} closed)")
            elif kind == "partition":
                broker = rng.choice(brokers)
                victim = broker.workers["a"][-1]
                # Longer than the two missed 5 s heartbeats that drop an AMQP
                # connection: a shorter cut only stalls it (TCP keeps the
                # bytes), there is nothing to log, and the check would fail.
                cut = rng.uniform(12, 16)
                faults.append((time.time(), kind, broker.kind, victim.name))
                log(f"fault: cut {victim.name} off its broker for {cut:.1f} s")
                relays[broker.kind].cut(cut)
            else:
                down = rng.uniform(2, 5)
                faults.append((time.time(), kind, "redis", f"redis-server :{broker_redis.port}"))
                log(f"fault: kill -9 the Redis broker, back in {down:.1f} s")
                # The Python worker steps aside (a warm stop: what it prefetched
                # goes back to the queue): kombu pops with BRPOP and records the
                # message in `unacked` with a second command, so a Redis crash
                # between the two loses it on the Python side (seen: 1 task in
                # a 30-minute run). Ours pops and records in one Lua script.
                redis_broker = brokers[0]
                redis_broker.python_workers[-1].stop()
                broker_redis.crash()
                time.sleep(down)
                broker_redis.start()
                start_python_worker(redis_broker)
            next_fault = time.time() + rng.uniform(30, 60)

        log("stopping the producers; draining")
        for broker in brokers:
            for producer in broker.producers:
                producer.stop()
        sent = {broker.kind: sent_ids(broker) for broker in brokers}
        deadline = time.time() + 180
        while time.time() < deadline:
            missing = sum(len(sent[broker.kind] - set(ran_ids(broker))) for broker in brokers)
            if missing == 0:
                break
            time.sleep(1)
        end_rss = {}
        for broker in brokers:
            for slot, lives in broker.workers.items():
                end_rss[(broker.kind, slot)] = lives[-1].rss_kb()
        for broker in brokers:
            for lives in broker.workers.values():
                lives[-1].stop()
            broker.python_workers[-1].stop()

        return report(options, brokers, sent, faults, start_rss, end_rss, started)

    try:
        ok = everything()
    except Aborted as error:
        print(f"soak run aborted: {error}", flush=True)
        print("result: FAIL")
        ok = False
    finally:
        # Whatever happened, nothing the run started outlives it.
        for broker in brokers:
            for process in list(all_workers(broker)) + broker.producers:
                process.stop(10)
        saved = save_logs(brokers, run_id)
        log(f"every process's output is in {saved}")
        for broker in brokers:
            if broker.kind == "amqp":
                subprocess.run(["rabbitmqctl", "-q", "delete_queue", broker.queue], capture_output=True)
        broker_redis.stop()
        results_redis.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    sys.exit(0 if ok else 1)


def save_logs(brokers, run_id):
    """Keeps every process's output under target/soak/<run>/ (not committed)."""
    directory = os.path.join(ROOT, "target", "soak", run_id)
    os.makedirs(directory, exist_ok=True)
    for broker in brokers:
        processes = list(all_workers(broker)) + broker.producers
        for index, process in enumerate(processes):
            name = f"{index:02d}-{process.name.replace(' ', '-')}.log"
            with open(os.path.join(directory, name), "w") as out:
                out.write(" ".join(process.args) + "\n")
                for _, which, line in process.lines:
                    out.write(f"{which}: {line}\n")
    return os.path.relpath(directory, os.getcwd())


def amqp_port(url):
    match = re.search(r"@[^/:]+:(\d+)/", url)
    return int(match.group(1)) if match else 5672


def close_connections(name_part):
    listing = subprocess.run(["rabbitmqctl", "-q", "list_connections", "pid", "client_properties"],
                             capture_output=True, text=True).stdout
    closed = 0
    for line in listing.splitlines():
        if name_part in line:
            pid = line.split("\t")[0]
            done = subprocess.run(["rabbitmqctl", "-q", "close_connection", pid, "soak fault"],
                                  capture_output=True)
            closed += done.returncode == 0
    return closed


def sent_ids(broker):
    ids = set()
    for producer in broker.producers:
        ids.update(line.strip() for line in producer.out() if UUID.match(line.strip()))
    return ids


def all_workers(broker):
    for lives in broker.workers.values():
        yield from lives
    yield from broker.python_workers


def completions(broker):
    """(time, id) of every task that succeeded, on any worker of `broker`."""
    found = []
    for worker in all_workers(broker):
        for _, line in worker.log_lines():
            match = SUCCEEDED.match(line)
            if match:
                found.append((stamp_time(match.group(1)), match.group(2)))
    return sorted(found)


def ran_ids(broker):
    return [task_id for _, task_id in completions(broker)]


def next_task_after(lives, moment):
    """Seconds from `moment` to the next task one worker slot finished."""
    later = [stamp_time(match.group(1)) for process in lives for _, line in process.log_lines()
             if (match := SUCCEEDED.match(line)) and stamp_time(match.group(1)) > moment]
    return min(later) - moment if later else None


def longest_gap(times, start, end):
    """The longest stretch in [start, end] with no task finishing."""
    inside = [moment for moment in times if start <= moment <= end]
    if not inside:
        return end - start
    points = [start] + inside + [min(end, inside[-1])]
    return max(later - earlier for earlier, later in zip(points, points[1:]))


def life_at(lives, moment):
    """Of a worker slot's lives (one per start), the one running at `moment`."""
    started = [life for life in lives if life.started <= moment]
    return started[-1] if started else lives[0]


def check_fault_logs(brokers, faults, run_end):
    """Each fault is logged by the workers it hit: one warning, one recovery, no flood."""
    problems = []
    lost = re.compile(r"WARNING/MainProcess\] (Connection to .* lost|Still no connection to )")
    back = "re-established after"
    for index, (moment, kind, broker_kind, target) in enumerate(faults):
        # A kill -9 is not logged by its victim; a cut Redis connection only
        # stalls (no heartbeats, and 30 s of patience per command).
        if kind == "kill9" or (kind == "partition" and broker_kind == "redis"):
            continue
        window_end = faults[index + 1][0] if index + 1 < len(faults) else run_end
        broker = next(broker for broker in brokers if broker.kind == broker_kind)
        # The life that was running at the fault: a slot restarted after a
        # kill -9 logs into a new process, and the old one holds the lines.
        if kind == "redis":
            hit = [life_at(lives, moment) for lives in broker.workers.values()]
        else:
            hit = [life_at(lives, moment) for lives in broker.workers.values()
                   if lives[-1].name == target]
        for worker in hit:
            lines = [(at, line) for at, line in worker.log_lines() if moment - 1 <= at <= window_end]
            warnings = [line for _, line in lines if lost.search(line)]
            recoveries = [line for _, line in lines if back in line]
            if not warnings:
                problems.append(f"{kind} at {time.strftime('%H:%M:%S', time.localtime(moment))}: "
                                f"{worker.name} logged no warning")
            if not recoveries:
                problems.append(f"{kind} at {time.strftime('%H:%M:%S', time.localtime(moment))}: "
                                f"{worker.name} logged no recovery")
            if len(warnings) > 6:
                problems.append(f"{kind}: {worker.name} logged {len(warnings)} warnings (a flood)")
    return problems


def report(options, brokers, sent, faults, start_rss, end_rss, started):
    ok = True
    run_end = time.time()
    print()
    print(f"soak run: {options.seconds / 60:.0f} min, seed {options.seed}, {len(faults)} faults")
    print()
    print("| broker | sent (ours + Python) | run | lost | duplicates |")
    print("|---|---|---|---|---|")
    for broker in brokers:
        ran = ran_ids(broker)
        counts = {}
        for task_id in ran:
            counts[task_id] = counts.get(task_id, 0) + 1
        lost = sent[broker.kind] - set(counts)
        duplicates = sum(count - 1 for count in counts.values())
        ours, theirs = (len(set(line.strip() for line in producer.out() if UUID.match(line.strip())))
                        for producer in broker.producers)
        print(f"| {broker.kind} | {len(sent[broker.kind])} ({ours} + {theirs}) | {len(set(counts))} | "
              f"**{len(lost)}** | {duplicates} |")
        if lost:
            ok = False
            print(f"  lost on {broker.kind}: {sorted(lost)[:10]}")
    print()
    # The broker's gap: no task finished on any of its workers. The target's:
    # from the fault to the next task finished by the worker it hit (for
    # the Redis broker, by every one of ours, the last to come back).
    print("| fault | at (s) | broker | target | broker's longest gap (s) | target's next task after (s) |")
    print("|---|---|---|---|---|---|")
    times = {broker.kind: [moment for moment, _ in completions(broker)] for broker in brokers}
    for index, (moment, kind, broker_kind, target) in enumerate(faults):
        until = faults[index + 1][0] if index + 1 < len(faults) else run_end
        gap = longest_gap(times[broker_kind], moment, min(until, moment + 60))
        broker = next(broker for broker in brokers if broker.kind == broker_kind)
        slots = broker.workers.values() if kind == "redis" else \
            [lives for lives in broker.workers.values() if lives[0].name == target]
        backs = [next_task_after(lives, moment) for lives in slots]
        back = "never" if not backs or None in backs else f"{max(backs):.2f}"
        print(f"| {kind} | {moment - started:.0f} | {broker_kind} | {target} | {gap:.2f} | {back} |")
    print()
    print("| worker | RSS at start (MB) | RSS at end (MB) | growth | restarts |")
    print("|---|---|---|---|---|")
    for broker in brokers:
        for slot, lives in sorted(broker.workers.items()):
            first, last = start_rss.get((broker.kind, slot)), end_rss.get((broker.kind, slot))
            growth = f"{(last - first) / 1024:+.1f} MB" if first and last else "?"
            print(f"| ours {broker.kind} {slot} | {first / 1024 if first else 0:.1f} | "
                  f"{last / 1024 if last else 0:.1f} | {growth} | {len(lives) - 1} |")
    problems = check_fault_logs(brokers, faults, run_end)
    print()
    if problems:
        ok = False
        print("log checks FAILED:")
        for problem in problems:
            print(f"  {problem}")
    else:
        print(f"log checks: every connection fault was logged by the workers it hit "
              f"(one warning, one recovery line, no flood)")
    print("result:", "PASS" if ok else "FAIL")
    return ok


if __name__ == "__main__":
    main()
