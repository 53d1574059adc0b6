"""A scripted stand-in for ``models.engine.Engine`` (same methods), for speed.

Use it where the model's judgment is not under test: how the bot routes,
folds, posts and survives. It records every window it is shown, the thread it
ran on, and can be made slow (``time.sleep`` on the model thread, like a real
forward pass) or made to fail. Tests that need the model itself use the real
``engine`` fixture from tests/conftest.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field

from models.turns import Turn


@dataclass
class ScriptedEngine:
    speak_probability: float | Callable[[Sequence[Turn]], float] = 0.1
    reply_text: str | Callable[[Sequence[Turn]], str] = "Lima is the capital of Peru."
    decide_seconds: float = 0.0
    reply_seconds: float = 0.0
    decide_error: Exception | None = None
    reply_error: Exception | None = None
    window_tokens: int = 1024

    decisions: list[tuple[Hashable, list[Turn]]] = field(default_factory=list)
    replies: list[tuple[Hashable, list[Turn]]] = field(default_factory=list)
    forgotten: list[Hashable] = field(default_factory=list)
    threads: set[str] = field(default_factory=set)

    def decide(self, window: Sequence[Turn], key: Hashable = "default") -> float:
        self.threads.add(threading.current_thread().name)
        self.decisions.append((key, list(window)))
        time.sleep(self.decide_seconds)
        if self.decide_error is not None:
            raise self.decide_error
        p = self.speak_probability
        return p(window) if callable(p) else p

    def reply(self, window: Sequence[Turn], key: Hashable = "default") -> str:
        self.threads.add(threading.current_thread().name)
        self.replies.append((key, list(window)))
        time.sleep(self.reply_seconds)
        if self.reply_error is not None:
            raise self.reply_error
        text = self.reply_text
        return text(window) if callable(text) else text

    def forget(self, key: Hashable) -> None:
        self.forgotten.append(key)

    def describe(self) -> dict:
        return {"model": "scripted", "adapter": None, "device": "cpu", "dtype": "none"}

    def decisions_in(self, channel_id: int) -> list[list[Turn]]:
        return [window for key, window in self.decisions if key == channel_id]
