"""config.py: the Celery configuration (the blog's ``config.py``).

The blog hard-codes ``broker_url = 'redis://127.0.0.1/7'``. Here that stays the
default, but every setting can be overridden from the environment so the Rust
interop tests and the benchmark can point the same package at their own Redis
database or at RabbitMQ without editing code:

    CELERY_BROKER_URL      broker (default: the blog's redis://127.0.0.1/7)
    CELERY_RESULT_BACKEND  result backend, e.g. redis://127.0.0.1:6379/11;
                           unset = disabled, as in the blog ("results: disabled://")
    CELERY_QUEUE           default queue (default: "celery", as in the blog's banner)
    CELERY_TASK_DEFAULT_QUEUE_TYPE
                           RabbitMQ queue type: classic (default) or quorum
    CELERY_SENTINEL_MASTER Redis Sentinel: the master's name, for a broker or
                           result backend written sentinel://HOST:PORT;sentinel://...

The serializer is Celery's default, JSON: the format the Rust side speaks.
"""
import os

# 指定消息队列的位置
# broker_url = 'amqp://guest:guest@xxx.xxx.xxx.xxx:5672'  # RabbitMQ
broker_url = os.environ.get('CELERY_BROKER_URL', 'redis://127.0.0.1/7')

# The blog has no result backend. An empty variable counts as unset.
result_backend = os.environ.get('CELERY_RESULT_BACKEND') or None

# Where delay() sends tasks and what a worker without -Q consumes.
task_default_queue = os.environ.get('CELERY_QUEUE', 'celery')

# RabbitMQ only: 'quorum' declares replicated queues for a cluster (the Rust
# worker's --queue-type, same variable). Celery then turns off global QoS.
task_default_queue_type = os.environ.get('CELERY_TASK_DEFAULT_QUEUE_TYPE', 'classic')
# The same for queues named only by -Q or delay(queue=...).
task_create_missing_queue_type = task_default_queue_type

# Redis behind Sentinel: kombu's sentinel:// transport (and Celery's
# sentinel:// result backend) take the master's name as a transport option.
# The Rust worker's --sentinel-master reads the same variable.
if os.environ.get('CELERY_SENTINEL_MASTER'):
    broker_transport_options = {'master_name': os.environ['CELERY_SENTINEL_MASTER']}
    result_backend_transport_options = {'master_name': os.environ['CELERY_SENTINEL_MASTER']}

# Keep retrying the broker connection at start-up (and silence Celery 5's
# deprecation warning about the setting's default changing in 6.0).
broker_connection_retry_on_startup = True
