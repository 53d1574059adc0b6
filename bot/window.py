"""Rolling windows: the recent conversation of each channel, in memory only.

Discord is the source of truth for messages. A channel's window is built from
Discord's own channel history the first time the bot needs it after a start
(or after the window was evicted), then kept up to date from gateway events:
new messages are added, edits replace, deletions remove. Nothing is written
to disk. A person's message with no bot message after it was a silence, so
the history alone rebuilds the decisions too.

Bounds: each window keeps the newest ``MAX_WINDOW_MESSAGES`` messages (the
engine trims further to its token budget); the store keeps the
``MAX_CHANNELS`` most recently used windows and evicts the rest, which are
rebuilt from history when next needed.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable

from models.turns import Turn

MAX_WINDOW_MESSAGES = 100  # also the number of history messages read when rebuilding
MAX_CHANNELS = 256


class ChannelWindow:
    """One channel's recent turns, keyed and ordered by Discord message id (snowflakes grow with time)."""

    def __init__(self, turns: Iterable[Turn] = (), max_messages: int = MAX_WINDOW_MESSAGES) -> None:
        self.max_messages = max_messages
        self._turns: dict[int, Turn] = {}
        for turn in turns:
            self.add(turn)

    def add(self, turn: Turn) -> None:
        """Add or replace a turn; beyond the bound the oldest message is dropped."""
        self._turns[turn.turn_id] = turn
        while len(self._turns) > self.max_messages:
            del self._turns[min(self._turns)]

    def update(self, turn: Turn) -> bool:
        """Replace a turn already in the window (an edit); False when it is not here."""
        if turn.turn_id not in self._turns:
            return False
        self._turns[turn.turn_id] = turn
        return True

    def remove(self, message_id: int) -> bool:
        return self._turns.pop(message_id, None) is not None

    def turns(self, upto: int | None = None) -> list[Turn]:
        """The turns in time order, optionally only those up to and including message ``upto``."""
        ids = sorted(i for i in self._turns if upto is None or i <= upto)
        return [self._turns[i] for i in ids]

    def role_of(self, message_id: int) -> str | None:
        turn = self._turns.get(message_id)
        return turn.role if turn else None

    def newest_id(self) -> int | None:
        return max(self._turns, default=None)

    def __len__(self) -> int:
        return len(self._turns)


class WindowStore:
    """Channel id -> ChannelWindow, least recently used evicted beyond ``max_channels``."""

    def __init__(self, max_channels: int = MAX_CHANNELS) -> None:
        self.max_channels = max_channels
        self._windows: OrderedDict[int, ChannelWindow] = OrderedDict()
        self._loading: dict[int, asyncio.Future[ChannelWindow]] = {}

    def get(self, channel_id: int) -> ChannelWindow | None:
        """The channel's window if it is in memory (no history read)."""
        window = self._windows.get(channel_id)
        if window is not None:
            self._windows.move_to_end(channel_id)
        return window

    async def load(self, channel_id: int,
                   read_history: Callable[[], Awaitable[list[Turn]]]) -> ChannelWindow:
        """The channel's window, built from ``read_history()`` if it is not in memory.

        Messages that arrive while the history is being read wait for the same
        read instead of starting their own.
        """
        window = self.get(channel_id)
        if window is not None:
            return window
        pending = self._loading.get(channel_id)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().create_future()
        self._loading[channel_id] = future
        try:
            window = ChannelWindow(await read_history())
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else needs to
            raise
        finally:
            self._loading.pop(channel_id, None)
        self._put(channel_id, window)
        future.set_result(window)
        return window

    def reset(self, channel_id: int) -> ChannelWindow:
        """Replace the channel's window with an empty one (``/forget``)."""
        window = ChannelWindow()
        self._put(channel_id, window)
        return window

    def _put(self, channel_id: int, window: ChannelWindow) -> None:
        self._windows[channel_id] = window
        self._windows.move_to_end(channel_id)
        while len(self._windows) > self.max_channels:
            self._windows.popitem(last=False)

    def __len__(self) -> int:
        return len(self._windows)
