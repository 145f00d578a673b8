"""Writes the fuzz targets' seed corpora (fuzz/seeds/<target>/) from real Celery.

Run with the project's venv (scripts/python-env makes it):

    .venv/bin/python fuzz/make_seeds.py

Every task message here is built by Celery 5.7 itself -- delay(), apply_async()
with countdown, expires, time limits, priority, shadow, and the canvas
(link, link_error, chain, group, chord) -- on kombu's in-memory transport, so
the envelopes are byte for byte what kombu LPUSHes onto a Redis list
(../shared/celery-protocol.md, A.1), and the AMQP header tables are what
py-amqp writes (C.1). To these come the captured message of the protocol
notes, the bad-input corpus of tests/bad_input.rs, the beat schedule file and
cron expressions from its tests. The seeds are committed; rerun this only to
refresh them.
"""
import base64
import json
import os
import pathlib
import shutil

from amqp.serialization import dumps as amqp_dumps
from celery import Celery, chain, chord, group

HERE = pathlib.Path(__file__).resolve().parent
SEEDS = HERE / "seeds"

app = Celery("seeds", broker="memory://", backend="cache+memory://")
app.conf.task_default_queue = "celery"


@app.task(name="SMS")
def send_sms_code(mobile, sms_code):
    pass


@app.task(name="add")
def add(x, y):
    return x + y


@app.task(name="mul")
def mul(x, y):
    return x * y


@app.task(name="xsum")
def xsum(numbers):
    return sum(numbers)


def sent_envelopes(send):
    """Runs send(); returns the envelopes it put on the in-memory broker."""
    from kombu.transport.memory import Channel

    for queue in Channel.queues.values():
        queue.queue.clear()
    send()
    envelopes = []
    for queue in Channel.queues.values():
        while queue.queue:
            envelopes.append(queue.queue.popleft())
    return envelopes


MESSAGES = {
    "delay": lambda: send_sms_code.delay("13800000000", "123456"),
    "kwargs": lambda: send_sms_code.apply_async(kwargs={"mobile": "13800000000", "sms_code": "123456"}),
    "unicode": lambda: send_sms_code.delay("13800000000", "验证码😀\n"),
    "countdown-expires": lambda: send_sms_code.apply_async(("13800000000", "123456"), countdown=60, expires=120),
    "eta-limits-shadow": lambda: add.apply_async((2, 3), time_limit=60, soft_time_limit=50, shadow="add-shadow", priority=7),
    "link": lambda: add.apply_async((2, 2), link=mul.s(4), link_error=add.si(0, 0)),
    "chain": lambda: chain(add.s(2, 2), mul.s(8), add.s(10)).apply_async(),
    "group": lambda: group(add.s(i, i) for i in range(3)).apply_async(),
    "chord": lambda: chord((add.s(i, i) for i in range(3)), xsum.s()).apply_async(),
    "chain-with-chord": lambda: chain(add.s(1, 1), group(mul.s(2), mul.s(3)), xsum.s()).apply_async(),
    "send_task": lambda: app.send_task("SMS", ("13800000000", "123456")),
}


def write(target, name, data):
    directory = SEEDS / target
    directory.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (directory / name).write_bytes(data)


def python_json(value):
    # kombu's json: Python's json.dumps defaults (", " and ": ", ASCII only).
    return json.dumps(value)


def bad_envelopes(good):
    """The poison corpus of tests/bad_input.rs, around a good envelope."""
    def with_body(body, **changes):
        envelope = json.loads(json.dumps(good))
        envelope["body"] = base64.b64encode(body).decode()
        envelope.update(changes)
        return python_json(envelope)

    headers_wrong = json.loads(json.dumps(good))
    headers_wrong["headers"]["retries"] = "two"
    no_headers = json.loads(json.dumps(good))
    del no_headers["headers"]
    plain_body = json.loads(json.dumps(good))
    plain_body["body"] = base64.b64decode(good["body"]).decode()
    del plain_body["properties"]["body_encoding"]
    return {
        "bad-json-body": with_body(b'[["13800000000", "123456"], {}, {"callbacks": nu'),
        "two-element-body": with_body(b'[["13800000000", "123456"], {}]'),
        "not-a-list-body": with_body(b'{"args": []}'),
        "pickle": with_body(b"\x80\x04\x95M\x00\x00\x00", **{"content-type": "application/x-python-serialize"}),
        "yaml": with_body(b"- [13800000000, 123456]\n- {}\n", **{"content-type": "application/x-yaml"}),
        "wrong-header-type": python_json(headers_wrong),
        "no-headers": python_json(no_headers),
        "plain-json-body": python_json(plain_body),
        "not-an-envelope": "this is not a kombu envelope {",
    }


def main():
    shutil.rmtree(SEEDS, ignore_errors=True)
    envelopes = {}
    for name, send in MESSAGES.items():
        for index, envelope in enumerate(sent_envelopes(send)):
            envelopes[f"{name}-{index}"] = envelope

    # The captured delay() of the protocol notes, A.1, as it was on the wire.
    captured = (
        '{"body": "W1siMTM4MDAwMDAwMDAiLCAiMTIzNDU2Il0sIHt9LCB7ImNhbGxiYWNrcyI6IG51bGwsICJlcnJiYWNrcyI6IG51bGwsICJjaGFpbiI6IG51bGwsICJjaG9yZCI6IG51bGx9XQ==", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"lang": "py", "task": "SMS", "id": "f4182531-f679-46ec-8e9e-7fe901432661", "shadow": null, "eta": null, "expires": null, "group": null, "group_index": null, "retries": 0, "timelimit": [null, null], "root_id": "f4182531-f679-46ec-8e9e-7fe901432661", "parent_id": null, "argsrepr": "(\'13800000000\', \'123456\')", "kwargsrepr": "{}", "origin": "gen5791@vm", "ignore_result": false, "replaced_task_nesting": 0, "stamped_headers": null, "stamps": {}}, "properties": {"correlation_id": "f4182531-f679-46ec-8e9e-7fe901432661", "reply_to": "4574baa8-c92d-3323-bf6b-2fb44f128c69", "delivery_mode": 2, "delivery_info": {"exchange": "", "routing_key": "celery"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "9d77126f-8af2-4bb0-8c3d-f2150a43e6cb"}}'
    )
    write("redis_envelope", "captured-a1", captured)
    for name, envelope in envelopes.items():
        write("redis_envelope", name, python_json(envelope))
    for name, text in bad_envelopes(envelopes["delay-0"]).items():
        write("redis_envelope", name, text)

    for name, envelope in envelopes.items():
        body = base64.b64decode(envelope["body"])
        write("task_body", name, body)
        # py-amqp's field table (4-byte length, then the entries), then the body.
        write("amqp_headers", name, amqp_dumps("F", [envelope["headers"]]) + body)
    for name, body in {
        "two-elements": b'[["13800000000", "123456"], {}]',
        "not-a-list": b'{"args": []}',
        "null-parts": b"[null, null, null]",
        "deep": b"[" * 200 + b"]" * 200,
        "big-numbers": b"[[1e308, -1e308, 18446744073709551615, -9223372036854775808], {}, {}]",
    }.items():
        write("task_body", name, body)
        write("amqp_headers", name, amqp_dumps("F", [{"task": "SMS", "id": "x", "retries": 1 << 40, "eta": None}]) + body)

    for name, value in {
        "args": ["13800000000", "123456"],
        "kwargs": {"mobile": "13800000000", "sms_code": "123456"},
        "quotes": ["it's", 'say "hi"', "both ' and \""],
        "controls": ["\x00\x07\x1b\x7f\u0085\u2028", "\\n"],
        "unicode": ["验证码", "😀", "\ud7ff"],
        "nested": [[None, True, 1.5, -0.0, 1e300], {"a": {"b": [{}]}}],
    }.items():
        write("pyrepr", name, json.dumps(value, ensure_ascii=False))

    schedule = (HERE.parent / "celery-sms-demo" / "beat-schedule.toml").read_text()
    write("schedule", "beat-schedule", schedule)
    write("schedule", "every-and-cron", '[entries.a]\ntask = "SMS"\nargs = ["13800000000", "x"]\nevery = 2\nexpires = 60\n\n[entries.b]\ntask = "add"\ncron = "*/5 9-17 * * mon-fri"\ntimezone = "America/New_York"\n')
    write("schedule", "catch-up-all", 'name = "s"\ncatch_up = "all"\ncatch_up_limit = 5\ntimezone = "Asia/Shanghai"\n[entries.a]\ntask = "x"\ncron = "30 2 * * *"\n')
    for name, expression in {
        "daily": "0 9 * * *",
        "steps-lists-names": "*/15,7 0-23/2 1,15 jan-jun mon,wed-fri",
        "both-days": "0 9 1 * mon",
        "macro": "@weekly",
        "leap-day": "0 0 29 2 *",
        "sunday-7": "0 0 * * 7",
        "dst-gap": "30 2 * * *",
    }.items():
        write("cron", name, expression)

    for name, url in {
        "blog-amqp": "amqp://guest:guest@127.0.0.1:5672/%2f",
        "blog-redis": "redis://127.0.0.1/7",
        "redis-password": "redis://:s3cret@127.0.0.1:6379/7",
        "redis-user": "redis://user:s3cret@127.0.0.1:6379/7",
        "query-password": "redis://127.0.0.1:6379/7?password=s3cret",
        "unix": "redis+unix:///tmp/redis.sock?db=1&pass=s3cret",
        "list": "amqp://a:one@h1:5672//;amqp://b:two@h2:5672//",
        "sentinel": "sentinel://:pw@h1:26379;sentinel://:pw@h2:26380/7",
        "ipv6": "amqps://u:p@[::1]:5671/vh?heartbeat=10&frame_max=131072",
        "unescaped": "amqp://app:Ab/cD;e#f@host//",
    }.items():
        write("urls", name, url)
    print(f"seeds written to {SEEDS.relative_to(pathlib.Path.cwd()) if SEEDS.is_relative_to(pathlib.Path.cwd()) else SEEDS}")


if __name__ == "__main__":
    main()
