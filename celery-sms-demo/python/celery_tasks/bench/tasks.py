"""Benchmark task ``noop``: does nothing, so a benchmark measures the worker
(fetch, decode, dispatch, ack) and not the task. Used by ``bench/celery_bench.py``."""
from celery_tasks.main import celery_app


@celery_app.task(name='noop')
def noop():
    """Do nothing; with no result backend nothing is stored either."""
    return None
