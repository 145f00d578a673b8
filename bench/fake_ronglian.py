"""A stand-in for Ronglian's (容联云通讯) SMS REST API that answers every
TemplateSMS request with success after a fixed delay (default 100 ms): the
gateway bench/sms.sh measures workers against. Nothing is checked or sent;
the Rust gateway's own tests check signatures and bodies.

    python bench/fake_ronglian.py --port 8883 --delay 0.1

Prints "listening on PORT" once it accepts connections. HTTP/1.1 with
keep-alive, so a client's connection pool is used as it would be.
"""
import argparse
import asyncio
import json
import sys

ANSWER = json.dumps({'statusCode': '000000',
                     'templateSMS': {'dateCreated': '20261202120000', 'smsMessageSid': 'bench'}}).encode()


async def serve(reader, writer, delay):
    try:
        while True:
            head = await reader.readuntil(b'\r\n\r\n')
            lines = head.decode('latin-1').split('\r\n')
            headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(':') for l in lines[1:] if l)}
            length = int(headers.get('content-length', 0) or 0)
            if length:
                await reader.readexactly(length)
            await asyncio.sleep(delay)
            close = headers.get('connection', '').lower() == 'close' or lines[0].endswith('HTTP/1.0')
            writer.write(b'HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=utf-8\r\n'
                         + f'Content-Length: {len(ANSWER)}\r\n'.encode()
                         + (b'Connection: close\r\n' if close else b'') + b'\r\n' + ANSWER)
            await writer.drain()
            if close:
                break
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


async def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--port', type=int, default=0, help='0: any free port')
    p.add_argument('--delay', type=float, default=0.1, help='seconds before each answer')
    args = p.parse_args()
    server = await asyncio.start_server(lambda r, w: serve(r, w, args.delay), '127.0.0.1', args.port,
                                        backlog=1024)
    print(f'listening on {server.sockets[0].getsockname()[1]}', flush=True)
    async with server:
        await server.serve_forever()


if __name__ == '__main__':
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
