#!/usr/bin/env python
import os
import sys

import pika

# The one change from the published text: the broker URL comes from
# AMQP_URL, so that a test can run this script in a vhost of its own.
connection = pika.BlockingConnection(
    pika.URLParameters(os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/%2F")),
)
channel = connection.channel()

channel.exchange_declare(exchange="direct_logs", exchange_type="direct")

severity = sys.argv[1] if len(sys.argv) > 2 else "info"
message = " ".join(sys.argv[2:]) or "Hello World!"
channel.basic_publish(
    exchange="direct_logs",
    routing_key=severity,
    body=message,
)
print(f" [x] Sent {severity}:{message}")

connection.close()
