"""``cloudcounter media-worker``: one media worker process.

Started by the hub's supervisor with ``--fd N`` (its end of a Unix socket pair), or on its
own machine with ``--redis URL`` (it registers itself with its capacity and load, and the
hubs reach it through :mod:`cloudcounter.cluster.requests`). ``SIGTERM`` drains it: it
takes no new call and exits when its last call has ended. It exits at once when the hub
end of its socket closes (the hub is gone: nobody would record what it carries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from typing import Any

from cloudcounter.media import seam

from .host import MAX_CALLS_DEFAULT, WorkerHost
from .protocol import Channel

log = logging.getLogger(__name__)
UDP_RECEIVE_BUFFER = 2 << 20  # as the hub's gateway: key-frame bursts


async def serve_socket(fd: int, worker_id: str, capacity: int) -> int:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    done = asyncio.Event()
    host = WorkerHost(worker_id, capacity, on_idle=done.set)
    channel = Channel(reader, writer, handler=host.handle, on_event=host.on_event,
                      name=f"worker {worker_id}")
    host.channel = channel
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, host.drain)
    loop.add_signal_handler(signal.SIGINT, host.drain)
    host.start()
    reading = asyncio.create_task(channel.run(), name="worker-channel")
    idle = asyncio.create_task(done.wait(), name="worker-idle")
    try:
        await asyncio.wait({reading, idle}, return_when=asyncio.FIRST_COMPLETED)
        if idle.done():
            channel.notify("drained", {"worker": worker_id})
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.drain(), 2.0)
    finally:
        idle.cancel()
        await host.stop()
        await channel.close()
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading
    return 0


def run(args: Any, loop_factory: Any = None) -> int:
    """``loop_factory``: the hub's event loop (uvloop by default, as ``serve``)."""
    from cloudcounter.hub.settings import Settings
    from cloudcounter.logs import configure

    import secrets
    # a worker holds none of the hub's secrets (the at-rest key comes with each recording)
    s = Settings.from_env(secret_key=secrets.token_hex(32),
                          customer_token_secret=secrets.token_hex(32))
    configure(s.log_level, s.log_format, f"{s.node_id}/media-{args.id}", [s.at_rest_key])
    seam.set_udp_receive_buffer(UDP_RECEIVE_BUFFER)
    capacity = args.capacity or s.media_worker_capacity or MAX_CALLS_DEFAULT
    worker_id = args.id or f"{socket.gethostname()}-{os.getpid()}"
    if args.fd is not None:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            return runner.run(serve_socket(args.fd, worker_id, capacity))
    from .redis_transport import serve_redis
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(serve_redis(args.redis or s.redis_url, worker_id, capacity,
                                      s.media_worker_lease_s))
