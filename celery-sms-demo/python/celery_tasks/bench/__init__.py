"""Benchmark tasks (not in the blog); registered by ``autodiscover_tasks`` in ``main.py``."""
