"""interop.py: drive real Python Celery 5.7 from the Rust interop tests.

The Rust crate ``celery-sms-demo`` claims to speak Celery's protocol. Its tests
prove it against the real thing: they run this script (with the venv's Python,
cwd = this directory so ``celery_tasks`` imports) to send tasks the way the
blog's Django code does (``send_sms_code.delay(...)``) and to read results the
way Python reads them (``AsyncResult.get()``).

Broker and result backend come from the environment, through
``celery_tasks/config.py``: ``CELERY_BROKER_URL``, ``CELERY_RESULT_BACKEND``.

Subcommands (stdout is exactly one line; errors go to stderr, exit status != 0):

  delay --queue Q [--task NAME] [--args JSON_LIST] [--kwargs JSON_OBJECT]
        [--countdown SECS] [--expires SECS_FROM_NOW] [--count N] [--task-id ID]
      Send N tasks (default: 1 x ``SMS``), print their ids separated by spaces.
      A task registered here (SMS, add, boom, noop) is sent with its own
      ``apply_async``, so the headers are exactly what ``.delay()`` sends
      (``ignore_result: false``...); any other name goes through
      ``send_task`` (``ignore_result: null``), e.g. to test unknown tasks.
      ``--expires`` may be negative (already expired). Note: Celery then
      warns on stderr and, on RabbitMQ, sets the message TTL to 0, so the
      broker may drop it before any worker sees it; on Redis the worker
      receives it and stores REVOKED.
  get TASK_ID [--timeout SECS]   (default 20)
      Wait for the result: ``AsyncResult(id).get(timeout, propagate=False)``;
      prints {"state", "result", "exc_type", "exc_message"}. For a failed or
      revoked task ``result`` is null and exc_* describe the exception
      (e.g. "ValueError"/"bad phone", "TaskRevokedError"/"expired").
  state TASK_ID
      Read the state without waiting: {"state", "result"}; for an exception
      ``result`` is {"exc_type", "exc_message"}. An unknown id is PENDING.
  canvas EXPRESSION [--queue Q] [--timeout SECS]
      Apply a canvas written in Python, as in Celery's docs, with ``add``,
      ``mul``, ``xsum``, ``boom``, ``chain``, ``group``, ``chord`` and
      ``signature`` in scope: ``"chain(add.s(2, 2), mul.s(8))"``. A signature
      is applied with ``apply_async()``; an expression that already applied
      one (``add.apply_async((2, 2), link=mul.s(3))``) is used as it is.
      Waits for the result (``get(propagate=False)``) and prints
      {"id", "state", "result", "exc_type", "exc_message"}. ``--queue`` sets
      the app's default queue (``task_default_queue``) for this call.
  push-raw --queue Q --json STRING
      LPUSH STRING as-is onto the Redis list Q in the broker's database
      (hand-made or malformed messages); redis:// brokers only. Prints "ok".

Exit status: 0 ok, 1 error, 2 bad usage, 3 timed out. Every wait is bounded:
broker connects and publishes retry a few times, ``get`` by --timeout, and a
whole-process alarm (--timeout + 30 s, or 60 s) stops anything that still hangs.
"""
import argparse
import datetime
import json
import os
import signal
import sys

EXIT_ERROR, EXIT_USAGE, EXIT_TIMEOUT = 1, 2, 3


class Deadline(Exception):
    """Raised by the SIGALRM handler: the whole command took too long."""


def fail(message, code=EXIT_ERROR):
    """One line on stderr, then exit at once (see the end of main())."""
    print(f'interop.py: {message}', file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def load_app():
    """Import the blog's app and register its tasks the way a worker does.

    ``autodiscover_tasks`` is lazy: the task modules are imported when the
    ``import_modules`` signal fires, which the worker triggers at start-up.
    """
    from celery_tasks.main import celery_app
    celery_app.loader.import_default_modules()
    return celery_app


def json_list(text):
    value = json.loads(text)
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError('must be a JSON list, e.g. \'["13800000000", "123456"]\'')
    return value


def json_object(text):
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('must be a JSON object, e.g. \'{"x": 1}\'')
    return value


def jsonable(value):
    """A result as JSON; values JSON cannot hold (datetime...) become strings."""
    return json.loads(json.dumps(value, default=str))


def exception_fields(value):
    if isinstance(value, BaseException):
        return type(value).__name__, str(value)
    return None, None


# --- subcommands --------------------------------------------------------------

def cmd_delay(app, args):
    options = {'queue': args.queue}
    if args.countdown is not None:
        options['countdown'] = args.countdown
    if args.task_id is not None:
        if args.count != 1:
            fail('--task-id sends one task: drop --count', EXIT_USAGE)
        options['task_id'] = args.task_id
    if args.expires is not None:
        # An absolute, timezone-aware datetime, as application code would pass.
        options['expires'] = (datetime.datetime.now(datetime.timezone.utc)
                              + datetime.timedelta(seconds=args.expires))
    task = app.tasks.get(args.task)
    # delay(*args) hands Celery a tuple, which shows in the argsrepr header as
    # "('13800000000', '123456')"; a list would give "[...]".
    positional = tuple(args.args)

    ids = []
    # One explicit connection for all N messages, closed at the end of the
    # block: on AMQP, closing waits for RabbitMQ's close-ok, so every publish
    # written before it has reached the broker when this process exits.
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=3)
        producer = app.amqp.Producer(conn, auto_declare=False)
        for _ in range(args.count):
            if task is not None:
                result = task.apply_async(positional, args.kwargs, producer=producer, **options)
            else:
                result = app.send_task(args.task, args=positional, kwargs=args.kwargs,
                                       producer=producer, **options)
            ids.append(result.id)
    print(' '.join(ids))


def cmd_get(app, args):
    from celery.exceptions import TimeoutError as CeleryTimeout
    result = app.AsyncResult(args.task_id)
    try:
        value = result.get(timeout=args.timeout, propagate=False)
    except CeleryTimeout:
        fail(f'no result for task {args.task_id} within {args.timeout} s '
             f'(state {result.state}); is a worker consuming the queue?', EXIT_TIMEOUT)
    exc_type, exc_message = exception_fields(value)
    print(json.dumps({
        'state': result.state,
        'result': None if exc_type else jsonable(value),
        'exc_type': exc_type,
        'exc_message': exc_message,
    }))


def cmd_state(app, args):
    # One backend read, so state and result come from the same snapshot.
    meta = app.backend.get_task_meta(args.task_id)
    value = meta.get('result')
    exc_type, exc_message = exception_fields(value)
    if exc_type:
        value = {'exc_type': exc_type, 'exc_message': exc_message}
    print(json.dumps({'state': meta['status'], 'result': jsonable(value)}))


def cmd_canvas(app, args):
    from celery import chain, chord, group, signature
    from celery.exceptions import TimeoutError as CeleryTimeout
    from celery.result import AsyncResult, GroupResult
    scope = {name: app.tasks[name] for name in ('add', 'mul', 'xsum', 'boom')}
    scope.update(chain=chain, chord=chord, group=group, signature=signature)
    value = eval(args.expression, scope)  # a test helper: the expression is the test's own
    result = value if isinstance(value, (AsyncResult, GroupResult)) else value.apply_async()
    try:
        got = result.get(timeout=args.timeout, propagate=False)
    except CeleryTimeout:
        fail(f'no result for {args.expression} within {args.timeout} s', EXIT_TIMEOUT)
    state = 'SUCCESS' if isinstance(result, GroupResult) and result.successful() else (
        'FAILURE' if isinstance(result, GroupResult) else result.state)
    exc_type, exc_message = exception_fields(got)
    print(json.dumps({
        'id': result.id,
        'state': state,
        'result': None if exc_type else jsonable(got),
        'exc_type': exc_type,
        'exc_message': exc_message,
    }))


def cmd_push_raw(app, args):
    import redis
    url = app.conf.broker_url
    if not url.startswith(('redis://', 'rediss://')):
        fail(f'push-raw needs a redis:// broker, not {url.split("://")[0]}://', EXIT_USAGE)
    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    client.lpush(args.queue, args.json.encode())
    print('ok')


def parser():
    p = argparse.ArgumentParser(
        prog='interop.py',
        description='Send tasks and read results with real Python Celery '
                    '(broker/backend from CELERY_BROKER_URL / CELERY_RESULT_BACKEND).')
    sub = p.add_subparsers(dest='command', required=True)

    d = sub.add_parser('delay', help='send tasks, print their ids')
    d.add_argument('--queue', required=True, help='queue to send to')
    d.add_argument('--task', default='SMS', help='task name (default: SMS)')
    d.add_argument('--args', type=json_list, default=[], help='positional args, a JSON list')
    d.add_argument('--kwargs', type=json_object, default={}, help='keyword args, a JSON object')
    d.add_argument('--countdown', type=float, help='run no earlier than SECS from now')
    d.add_argument('--expires', type=float, help='expire SECS from now (negative: already expired)')
    d.add_argument('--count', type=int, default=1, help='number of tasks (default 1)')
    d.add_argument('--task-id', help="the task's id (default: a fresh one); one task only")
    d.set_defaults(func=cmd_delay)

    g = sub.add_parser('get', help='wait for a result, print it as JSON')
    g.add_argument('task_id')
    g.add_argument('--timeout', type=float, default=20.0, help='seconds (default 20)')
    g.set_defaults(func=cmd_get)

    s = sub.add_parser('state', help='print the current state without waiting')
    s.add_argument('task_id')
    s.set_defaults(func=cmd_state)

    c = sub.add_parser('canvas', help='apply a canvas expression, wait, print its result as JSON')
    c.add_argument('expression', help='e.g. "chain(add.s(2, 2), mul.s(8))"')
    c.add_argument('--queue', help="the app's default queue for this call")
    c.add_argument('--timeout', type=float, default=30.0, help='seconds (default 30)')
    c.set_defaults(func=cmd_canvas)

    r = sub.add_parser('push-raw', help='LPUSH a raw string to a Redis queue list')
    r.add_argument('--queue', required=True)
    r.add_argument('--json', required=True, help='the string to push, as-is')
    r.set_defaults(func=cmd_push_raw)
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    if getattr(args, 'count', 1) < 1:
        fail('--count must be at least 1', EXIT_USAGE)

    # The last line of defence: whatever hangs (a broker that accepts the TCP
    # connection and then says nothing), the process ends.
    waits = args.command in ('get', 'canvas')
    budget = int(getattr(args, 'timeout', 0) or 0) + 30 if waits else 60
    if args.command == 'delay':
        budget += args.count // 100

    def on_alarm(signum, frame):
        raise Deadline()
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(budget)

    if getattr(args, 'queue', None) and args.command == 'canvas':
        # config.py reads it when the app loads: the default queue of this call.
        os.environ['CELERY_QUEUE'] = args.queue
    try:
        app = load_app()
        if args.command in ('get', 'state', 'canvas') and app.conf.result_backend is None:
            fail('no result backend: set CELERY_RESULT_BACKEND, e.g. redis://127.0.0.1:6379/11',
                 EXIT_USAGE)
        args.func(app, args)
    except Deadline:
        fail(f'{args.command} did not finish within {budget} s', EXIT_TIMEOUT)
    except Exception as exc:  # one line for the test log, not a traceback
        fail(f'{args.command} failed: {type(exc).__name__}: {exc}')
    finally:
        signal.alarm(0)
    sys.stdout.flush()
    # Skip interpreter teardown: Celery's pools and the result consumer have
    # nothing left to do, and their __del__ hooks (UNSUBSCRIBE from the result
    # channel...) would run against a half-torn-down interpreter and print
    # tracebacks, or block on a dead broker.
    os._exit(0)


if __name__ == '__main__':
    main()
