"""Benchmark: our producer/consumer vs the blog's pika scripts, same broker, same run.

Run through bench/amqp.sh. For each queue kind (the blog's non-durable queue,
and a durable queue with persistent messages) it measures, ROUNDS times each:
  publish  N confirmed messages   pika (waits per confirm) vs `producer --count N`
  consume  N messages, manual ack pika (ack each)          vs `consumer --count N`
and prints the median rates and the ratio ours/pika.
"""
import os
import re
import statistics
import subprocess
import sys
import uuid

PYTHON, PRODUCER, CONSUMER = sys.argv[1:4]
N = int(os.environ.get("BENCH_MESSAGES", "50000"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
HERE = os.path.dirname(os.path.abspath(__file__))


def rate(cmd, pattern, stream):
    done = subprocess.run(cmd, stdout=subprocess.PIPE if stream == "stdout" else subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    text = done.stdout if stream == "stdout" else done.stderr
    match = re.search(pattern, text or "")
    if done.returncode != 0 or not match:
        sys.exit(f"benchmark step failed: {' '.join(cmd)}\n{done.stderr}")
    return float(match.group(1))


def delete(queue):
    subprocess.run(["rabbitmqctl", "-q", "delete_queue", queue], capture_output=True, check=False)


def measure(kind):
    durable = ["--durable"] if kind == "durable" else []
    results = {"pika publish": [], "ours publish": [], "pika consume": [], "ours consume": []}
    for _ in range(ROUNDS):
        q = f"bench-{kind}-{uuid.uuid4().hex[:8]}"
        results["pika publish"].append(rate([PYTHON, f"{HERE}/pika_producer.py", str(N), q, kind], r"rate (\d+)", "stdout"))
        results["pika consume"].append(rate([PYTHON, f"{HERE}/pika_consumer.py", str(N), q, kind], r"rate (\d+)", "stderr"))
        results["ours publish"].append(rate([PRODUCER, "--count", str(N), "--queue", q, *durable, "-l", "warning"],
                                            r"([\d.]+) msgs/s", "stdout"))
        results["ours consume"].append(rate([CONSUMER, "--count", str(N), "--queue", q, *durable, "-l", "warning"],
                                            r"([\d.]+) msgs/s", "stderr"))
        delete(q)
    return {name: statistics.median(values) for name, values in results.items()}


print(f"{N} messages per step, median of {ROUNDS} rounds, broker amqp://guest:**@127.0.0.1:5672/%2f")
print(f"{'queue':<28}{'step':<10}{'pika msgs/s':>14}{'ours msgs/s':>14}{'ours/pika':>11}")
for kind, label in (("transient", "non-durable (blog's)"), ("durable", "durable + persistent")):
    medians = measure(kind)
    for step in ("publish", "consume"):
        pika, ours = medians[f"pika {step}"], medians[f"ours {step}"]
        print(f"{label:<28}{step:<10}{pika:>14,.0f}{ours:>14,.0f}{ours / pika:>10.1f}x")
