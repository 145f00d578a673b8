"""The blog's rabbit_customer.py, made to consume N messages reliably.

Same calls as the blog (basic_consume + start_consuming) but with manual acks
and prefetch 100, the settings our consumer uses by default, so both sides
do the same work: print the body, then ack it. Prints the rate to stderr.
"""
import sys
import time

import pika

count, queue, durable = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "durable"
credentials = pika.PlainCredentials("guest", "guest")
connection = pika.BlockingConnection(pika.ConnectionParameters("localhost", 5672, "/", credentials))
channel = connection.channel()
channel.queue_declare(queue=queue, durable=durable)
channel.basic_qos(prefetch_count=100)
state = {"seen": 0, "started": None}


def callback(ch, method, properties, body):
    if state["started"] is None:
        state["started"] = time.perf_counter()
    print(body)
    ch.basic_ack(delivery_tag=method.delivery_tag)
    state["seen"] += 1
    if state["seen"] == count:
        ch.stop_consuming()


channel.basic_consume(queue=queue, on_message_callback=callback)
channel.start_consuming()
elapsed = time.perf_counter() - state["started"]
connection.close()
print(f"rate {count / elapsed:.0f}", file=sys.stderr)
