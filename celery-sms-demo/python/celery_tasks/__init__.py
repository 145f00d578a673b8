"""The blog's Celery package, ``celery_tasks``, as real runnable Python.

This is the Python half of the Celery part of the tutorial (the blog's
"Celery 、RabbitMQ" post): the same package layout the blog uses, so that
``celery -A celery_tasks.main worker -l info`` works exactly as in the post.
The Rust crate ``celery-sms-demo`` speaks the same wire protocol; its interop
tests and the benchmark drive this package (through ``../interop.py`` and
``bench/celery_bench.py``) to prove that a Python producer can feed the Rust
worker and the other way round.

Layout (as in the blog)::

    celery_tasks/
        main.py            the Celery app: create, configure, autodiscover
        config.py          broker_url (Redis db 7 by default, RabbitMQ commented)
        sms/tasks.py       the task ``SMS`` (send_sms_code)
        sms/yuntongxun/    the SMS "SDK" (a stand-in here: it sends nothing)
        bench/tasks.py     ``noop``, for the benchmark (not in the blog)
        demo/tasks.py      ``add`` and ``boom``, for result-backend interop tests
"""
