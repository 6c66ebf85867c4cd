"""Ownership of the background tasks that Socket.IO/Engine.IO start for the hub.

Engine.IO starts a ping task per connection (which sleeps up to the ping interval after
the connection closes) and a task per handled message. The hub routes them through a
registry so that shutdown cancels and awaits every one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Callable


class TaskRegistry:
    def __init__(self) -> None:
        self.tasks: set[asyncio.Future[Any]] = set()

    def wrap(self, start: Callable[..., asyncio.Future[Any]]) -> Callable[..., asyncio.Future[Any]]:
        def start_owned(target: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            task = start(target, *args, **kwargs)
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return task
        return start_owned

    async def cancel_all(self) -> None:
        pending = [t for t in self.tasks if not t.done()]
        for t in pending:
            t.cancel()
        for t in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
