"""The initializer of the hub's vision workers (``VisionPool(initializer=init_hub_worker)``).

A spawned worker of a :class:`~concurrent.futures.ProcessPoolExecutor` blocks on
its call queue forever if the hub is killed (SIGKILL leaves no chance to shut the
pool down). Its initializer here loads the models, as the vision core's does, starts a
watchdog thread that exits the worker once its parent process is gone, and lowers the
worker's priority so that analysis never takes CPU from media forwarding.
Kept light: spawned workers import this module.
"""

from __future__ import annotations

import os
import threading
import time

from cloudcounter.vision.pool import init_worker

WATCH_INTERVAL_S = 1.0
#: Workers run at a lower priority than the hub: under CPU contention forwarding and
#: recording media come first, and analysis drops frames (it is built to).
WORKER_NICE = 10


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(WATCH_INTERVAL_S)
        if os.getppid() != parent:
            os._exit(0)


def init_hub_worker() -> None:
    """Pool initializer: lower priority, exit with the parent, then load the models."""
    try:
        os.nice(WORKER_NICE)
    except OSError:  # pragma: no cover - not permitted: run at normal priority
        pass
    threading.Thread(target=_watch_parent, args=(os.getppid(),), name="parent-watch",
                     daemon=True).start()
    init_worker()

