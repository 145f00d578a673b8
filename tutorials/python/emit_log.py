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

channel.exchange_declare(exchange="logs", exchange_type="fanout")

message = " ".join(sys.argv[1:]) or "info: Hello World!"
channel.basic_publish(exchange="logs", routing_key="", body=message)
print(f" [x] Sent {message}")

connection.close()
