"""The Python half of the soak run's task stream: the blog's delay(), at a rate.

    soak_delay.py QUEUE RATE        (broker from CELERY_BROKER_URL)

Sends send_sms_code.delay('13800000000', '123456') RATE times a second to QUEUE
and prints each task id once delay() has returned (the message is with the
broker), until SIGTERM. A delay() that raises (the broker is down) is logged
on stderr and tried again half a second later with a new task: only ids that
were sent count as sent.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "celery-sms-demo", "python"))

from celery_tasks.main import celery_app  # noqa: E402

celery_app.loader.import_default_modules()
SMS = celery_app.tasks["SMS"]

running = True


def stop(*_):
    global running
    running = False


def main():
    queue, rate = sys.argv[1], float(sys.argv[2])
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    started = time.monotonic()
    sent = 0
    while running:
        due = int((time.monotonic() - started) * rate)
        while running and sent < due:
            try:
                result = SMS.apply_async(("13800000000", "123456"), queue=queue)
            except Exception as error:  # the broker is away: try again shortly
                print(f"delay() failed: {error!r}", file=sys.stderr, flush=True)
                time.sleep(0.5)
                continue
            print(result.id, flush=True)
            sent += 1
        time.sleep(0.01)
    print(f"sent {sent} tasks", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
