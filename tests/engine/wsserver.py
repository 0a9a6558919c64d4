# -*- coding: utf-8 -*-
# Copyright: scalelab.testbed contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A WebSocket server nobody here wrote: the PyPI websockets library (tests only).

    python3 wsserver.py ADDRESS PORT READY_FILE [--bad-accept]

Holds every connection until the peer closes it, answers pings and pings
every client every 2 s itself, closing a connection whose pong does not come
within 10 s (the library does all of that). With --bad-accept it answers the upgrade with a wrong
Sec-WebSocket-Accept, which a client must refuse. Writes READY_FILE once it
listens.
"""

import asyncio
import base64
import sys

from websockets.asyncio.server import serve


async def hold(ws):
    await ws.wait_closed()


def wrong_accept(_connection, _request, response):
    del response.headers['Sec-WebSocket-Accept']       # a multi-dict: replace, not add
    response.headers['Sec-WebSocket-Accept'] = base64.b64encode(b'not the right key!!!').decode()
    return response


async def main(address, port, ready, bad):
    kwargs = {'process_response': wrong_accept} if bad else {}
    async with serve(hold, address, port, subprotocols=['chat'], ping_interval=2, ping_timeout=10,
                     backlog=65535, max_queue=1, **kwargs):
        with open(ready, 'w') as f:
            f.write('ready\n')
        await asyncio.Future()


if __name__ == '__main__':
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], '--bad-accept' in sys.argv))
