#!/usr/bin/env python
"""Calls per second of the tutorial's pika RPC client, for bench/tutorials.sh.

The same client as rpc_client.py (one exclusive callback queue, one
correlation_id per call, process_data_events until the reply arrives),
making CALLS sequential calls of fib(N) instead of one call of fib(30).

    python rpc_bench.py [CALLS] [N]      # default 2000 calls of fib(1)
"""
import os
import sys
import time
import uuid

import pika

calls = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
n = int(sys.argv[2]) if len(sys.argv) > 2 else 1

connection = pika.BlockingConnection(
    pika.URLParameters(os.environ.get('AMQP_URL', 'amqp://guest:guest@localhost:5672/%2F')))
channel = connection.channel()
callback_queue = channel.queue_declare(queue='', exclusive=True).method.queue
state = {'corr_id': None, 'response': None}


def on_response(ch, method, props, body):
    if state['corr_id'] == props.correlation_id:
        state['response'] = body


channel.basic_consume(queue=callback_queue, on_message_callback=on_response, auto_ack=True)

start = time.perf_counter()
for _ in range(calls):
    state['response'] = None
    state['corr_id'] = str(uuid.uuid4())
    channel.basic_publish(
        exchange='', routing_key='rpc_queue',
        properties=pika.BasicProperties(reply_to=callback_queue, correlation_id=state['corr_id']),
        body=str(n))
    while state['response'] is None:
        connection.process_data_events(time_limit=None)
seconds = time.perf_counter() - start
print(f"pika rpc_client: {calls} calls in {seconds:.2f} s: {calls / seconds:.0f} calls/s")
connection.close()
