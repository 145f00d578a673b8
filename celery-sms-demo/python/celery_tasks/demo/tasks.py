"""Tasks with results, for the result-backend interop tests.

``add`` returns a value (state SUCCESS) and ``boom`` raises (state FAILURE,
``{"exc_type": "ValueError", "exc_message": [msg], "exc_module": "builtins"}``
in the backend). A Rust worker that stores the same meta lets
``AsyncResult.get()`` in Python return 5 or raise ``ValueError`` unchanged.
These mirror ``shared/celery-captures/smsapp.py``, where the wire format was captured.
"""
from celery_tasks.main import celery_app


@celery_app.task(name='add')
def add(x, y):
    """Return x + y (SUCCESS, result 5 for add(2, 3))."""
    return x + y


@celery_app.task(name='boom')
def boom(msg):
    """Always fail with ValueError(msg) (FAILURE)."""
    raise ValueError(msg)


# Celery's first-steps tasks (https://docs.celeryq.dev/en/stable/getting-started/next-steps.html),
# under the same names the Rust app registers them: canvas runs mixed across
# Python and Rust workers only when both sides know the same names.
@celery_app.task(name='mul')
def mul(x, y):
    """Return x * y."""
    return x * y


@celery_app.task(name='xsum')
def xsum(numbers):
    """Return the sum of a list: the usual chord body."""
    return sum(numbers)
