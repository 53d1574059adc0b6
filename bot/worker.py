"""The one thread that runs the model, so the event loop never waits on it.

The engine is synchronous and not thread-safe, and a forward pass takes long
enough to starve the gateway heartbeat if it ran on the event loop ("heartbeat
blocked for more than N seconds"). So every engine call goes through this
single-worker executor, one at a time.

Callers take ``async with worker.turn():`` before they read the room and call
the model: the lock is fair (first come, first served across channels), and
whoever holds it reads the window only when the model is free for them, so a
channel's decision always sees its newest messages.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")

RECENT_DECISIONS = 50  # latencies kept for /status


class ModelWorker:
    def __init__(self, engine) -> None:
        self.engine = engine
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chimein-model")
        self._lock = asyncio.Lock()
        self.decision_seconds: deque[float] = deque(maxlen=RECENT_DECISIONS)

    def turn(self) -> asyncio.Lock:
        """The model's turn: hold it while reading a window and running the engine on it."""
        return self._lock

    async def run(self, call: Callable[..., T], *args, **kwargs) -> tuple[T, float]:
        """Run ``call`` on the model thread; returns its result and the seconds it took."""
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        result = await loop.run_in_executor(self._executor, lambda: call(*args, **kwargs))
        return result, time.perf_counter() - started

    async def decide(self, window, key, notes=None) -> tuple[float, float]:
        probability, seconds = await self.run(self.engine.decide, window, key=key, **_with_notes(notes))
        self.decision_seconds.append(seconds)
        return probability, seconds

    async def reply(self, window, key, notes=None) -> tuple[str, float]:
        return await self.run(self.engine.reply, window, key=key, **_with_notes(notes))

    async def forget(self, key) -> None:
        async with self._lock:
            await self.run(self.engine.forget, key)

    def median_decision_seconds(self) -> float | None:
        return statistics.median(self.decision_seconds) if self.decision_seconds else None

    def describe(self) -> dict:
        return self.engine.describe()

    def close(self) -> None:
        # A generation in progress finishes on its own; nothing new starts.
        self._executor.shutdown(wait=False, cancel_futures=True)


def _with_notes(notes) -> dict:
    """The engine's ``notes`` argument (passage texts), only when there are some."""
    return {"notes": list(notes)} if notes else {}
