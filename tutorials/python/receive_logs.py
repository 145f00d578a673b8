#!/usr/bin/env python
import os
import sys

import pika


def main():
    # The one change from the published text: the broker URL comes from
    # AMQP_URL, so that a test can run this script in a vhost of its own.
    connection = pika.BlockingConnection(
        pika.URLParameters(os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/%2F")),
    )
    channel = connection.channel()

    channel.exchange_declare(exchange="logs", exchange_type="fanout")

    result = channel.queue_declare(queue="", exclusive=True)
    queue_name = result.method.queue

    channel.queue_bind(exchange="logs", queue=queue_name)

    def callback(ch, method, properties, body):
        print(f" [x] {body.decode()}")

    print(" [*] Waiting for logs. To exit press CTRL+C")
    channel.basic_consume(
        queue=queue_name,
        on_message_callback=callback,
        auto_ack=True,
    )

    channel.start_consuming()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("Interrupted")
        try:
            sys.exit(0)
        except SystemExit:
            os._exit(0)
