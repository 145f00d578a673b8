"""main.py: the Celery program entry point (the blog's ``main.py``).

Start a worker from the directory that holds ``celery_tasks/``::

    celery -A celery_tasks.main worker -l info

The three steps are the blog's, with its Chinese comments kept. The only
change is that ``autodiscover_tasks`` names real packages instead of the
blog's ``'celery_tasks.xxx'`` placeholders.

How discovery works (it is lazy): ``autodiscover_tasks`` only registers a
callback. When the worker boots it calls ``app.loader.import_default_modules()``,
which fires the ``import_modules`` signal, and only then are
``celery_tasks.sms.tasks`` etc. imported and their ``@celery_app.task``
functions registered (the worker banner lists them under ``[tasks]``).
A client that wants to look tasks up by name must trigger the same step;
``interop.py`` calls ``celery_app.loader.import_default_modules()``.
"""
from celery import Celery

# 1. 创建celery实例对象（生产者）
celery_app = Celery('celery_tasks')

# 2. 加载配置， 指定谁来做为经纪人（任务存在哪）
celery_app.config_from_object('celery_tasks.config')

# 3. 自动注册执行 (each package's ``tasks`` module is imported when the worker starts)
celery_app.autodiscover_tasks([
    'celery_tasks.sms',    # SMS: the blog's task
    'celery_tasks.bench',  # noop: benchmark only
    'celery_tasks.demo',   # add, boom: result-backend interop tests
])
