#!/usr/bin/env python
"""Tutorial 7's first strategy, "publish messages individually", in pika.

The official tutorial 7 is Java-only. pika's BlockingChannel can do just this
one of its three strategies: after confirm_delivery(), every basic_publish
waits for the broker's confirm. Prints the Java tutorial's line, so that
bench/tutorials.sh can set it beside our three.

    python publisher_confirms.py [MESSAGES]      # default 50,000
"""
import os
import sys
import time

import pika

MESSAGE_COUNT = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000

connection = pika.BlockingConnection(
    pika.URLParameters(os.environ.get('AMQP_URL', 'amqp://guest:guest@localhost:5672/%2F')))
channel = connection.channel()
# Exclusive and server-named, like ours: deleted with the connection.
queue = channel.queue_declare(queue='', exclusive=True).method.queue
channel.confirm_delivery()

start = time.perf_counter()
for i in range(MESSAGE_COUNT):
    channel.basic_publish(exchange='', routing_key=queue, body=str(i))
elapsed_ms = round((time.perf_counter() - start) * 1000)
print(f"Published {MESSAGE_COUNT:,} messages individually in {elapsed_ms:,} ms")
connection.close()
