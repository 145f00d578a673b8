"""The blog's rabbit_producer.py, made to publish N messages with confirms.

Same calls as the blog (BlockingConnection, queue_declare, basic_publish on
the default exchange) plus what a fair comparison needs: publisher confirms
and mandatory=True, as our producer uses. pika's BlockingConnection waits for
each confirm before the next publish. Prints the rate on the last line.
"""
import sys
import time

import pika

count, queue, durable = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "durable"
credentials = pika.PlainCredentials("guest", "guest")
connection = pika.BlockingConnection(pika.ConnectionParameters("localhost", 5672, "/", credentials))
channel = connection.channel()
channel.queue_declare(queue=queue, durable=durable)
channel.confirm_delivery()
properties = pika.BasicProperties(delivery_mode=2 if durable else None)
started = time.perf_counter()
for n in range(1, count + 1):
    channel.basic_publish(exchange="", routing_key=queue, body=f"Hello RabbitMQ! #{n}",
                          properties=properties, mandatory=True)
elapsed = time.perf_counter() - started
connection.close()
print(f"rate {count / elapsed:.0f}")
