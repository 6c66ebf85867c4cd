"""A process pool for frame analysis, so the event loop never runs dlib.

Each worker process loads the dlib models once in :func:`init_worker`; the
hub then awaits :meth:`VisionPool.analyse`. Dropping frames when behind is the
caller's policy: :attr:`VisionPool.busy` tells how many analyses are in
flight, so the media tap can skip a frame instead of queueing it.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Callable

from cloudcounter.vision.analysis import FrameAnalysis, Image, analyse_frame
from cloudcounter.vision.errors import VisionError
from cloudcounter.vision.mesh import load as load_mesh
from cloudcounter.vision.models import get_models


def init_worker() -> None:
    """Process-pool initializer: load the models before the first frame arrives."""
    get_models()
    load_mesh()


def _analyse(frame: Image, want_descriptor: bool, stream: str | None, mirrored: bool,
             want_cues: bool) -> FrameAnalysis:
    return analyse_frame(frame, want_descriptor, stream=stream, mirrored=mirrored,
                         want_cues=want_cues)


class VisionPool:
    """Owns a :class:`ProcessPoolExecutor`; open with :meth:`start`, close with :meth:`stop`."""

    def __init__(
        self,
        size: int = 1,
        *,
        mirrored: bool = False,
        mp_context: str = "spawn",
        initializer: Callable[[], None] = init_worker,
    ) -> None:
        if size < 1:
            raise ValueError("pool size must be at least 1")
        self.size = size
        self.mirrored = mirrored
        self._mp_context = mp_context
        self._initializer = initializer
        self._executor: ProcessPoolExecutor | None = None
        self._in_flight = 0

    @property
    def running(self) -> bool:
        return self._executor is not None

    @property
    def busy(self) -> int:
        """Analyses submitted and not finished yet."""
        return self._in_flight

    def start(self) -> None:
        """Start the workers (spawned: forking a process that runs an event loop is unsafe)."""
        if self._executor is not None:
            return
        self._executor = ProcessPoolExecutor(
            max_workers=self.size,
            mp_context=multiprocessing.get_context(self._mp_context),
            initializer=self._initializer,
        )

    async def warm_up(self) -> None:
        """Wait until every worker has loaded the models (optional, for a fast first frame)."""
        executor = self._require()
        loop = asyncio.get_running_loop()
        await asyncio.gather(
            *(loop.run_in_executor(executor, init_worker) for _ in range(self.size))
        )

    async def analyse(self, frame: Image, want_descriptor: bool = False, *,
                      stream: str | None = None, want_cues: bool = False) -> FrameAnalysis:
        """Analyse one RGB frame in a worker process; ``stream`` (a call) is tracked."""
        executor = self._require()
        loop = asyncio.get_running_loop()
        call = functools.partial(_analyse, frame, want_descriptor, stream, self.mirrored,
                                 want_cues)
        self._in_flight += 1
        try:
            return await loop.run_in_executor(executor, call)
        finally:
            self._in_flight -= 1

    async def stop(self) -> None:
        """Shut the workers down without blocking the event loop."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(
            None, functools.partial(executor.shutdown, wait=True, cancel_futures=True)
        )

    def _require(self) -> ProcessPoolExecutor:
        if self._executor is None:
            raise VisionError("the vision pool is not started", code="pool_not_started")
        return self._executor

    async def __aenter__(self) -> VisionPool:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
