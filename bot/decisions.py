"""Per-channel decisions: at most one waiting, forced replies queued, one log line each.

Each channel with work has a lane: a flag "the room changed, decide again" and
a queue of forced replies (mentions, replies to the bot, DMs). One task per
lane drains it, taking the model's turn for every step:

- a forced reply answers the window up to the message that asked, and replies
  to that message;
- a decision runs on the window as it is when the model becomes free, so a
  burst of messages that arrived while the model was busy becomes one decision
  on the newest state of the room.

Bounds: lanes exist only while they have work; a lane queues at most
``MAX_FORCED_PER_CHANNEL`` forced replies (beyond that the oldest is dropped
with a warning: that is a flood, not a conversation).

Failures stay inside: a model error is logged and the bot stays silent, except
that a forced reply says briefly it could not answer; a Discord error is logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import discord

from bot.sending import COULD_NOT_ANSWER, post
from bot.window import WindowStore
from bot.worker import ModelWorker
from models.threshold import chattiness_to_threshold, should_speak
from models.turns import Turn

log = logging.getLogger(__name__)

MAX_FORCED_PER_CHANNEL = 20


def channel_label(channel) -> str:
    name = getattr(channel, "name", None)
    return f"#{name}({channel.id})" if name else f"dm({channel.id})"


def log_decision(channel, reason: str, spoke: bool, *, probability: float | None = None,
                 threshold: float | None = None, seconds: float | None = None, note: str = "") -> None:
    """The one line per decision a self-hoster reads to see why it spoke or not."""
    parts = [f"decision channel={channel_label(channel)} reason={reason} spoke={'yes' if spoke else 'no'}"]
    if probability is not None:
        parts.append(f"p={probability:.3f} threshold={threshold:.2f}")
    if seconds is not None:
        parts.append(f"latency={seconds:.3f}s")
    if note:
        parts.append(f"({note})")
    log.info(" ".join(parts))


@dataclass
class _Lane:
    channel: discord.abc.Messageable
    wants_decision: bool = False
    forced: deque[tuple[discord.Message, str]] = field(default_factory=deque)
    done_upto: int = 0  # newest message id already answered or decided on
    task: asyncio.Task | None = None

    def has_work(self) -> bool:
        return self.wants_decision or bool(self.forced)


class DecisionQueue:
    def __init__(self, worker: ModelWorker, windows: WindowStore,
                 chattiness_for: Callable[[discord.abc.Messageable], float]) -> None:
        self.worker = worker
        self.windows = windows
        self.chattiness_for = chattiness_for
        self._lanes: dict[int, _Lane] = {}

    def ask_model(self, message: discord.Message) -> None:
        """The room changed in a way the model should judge; folds into a waiting decision."""
        lane = self._lane(message.channel)
        lane.wants_decision = True
        self._drain_soon(lane)

    def force_reply(self, message: discord.Message, reason: str) -> None:
        """Reply to ``message`` whatever the model thinks; never folded away."""
        lane = self._lane(message.channel)
        if len(lane.forced) >= MAX_FORCED_PER_CHANNEL:
            dropped, _ = lane.forced.popleft()
            log.warning("forced replies queue full in %s: dropping the oldest (message %s)",
                        channel_label(lane.channel), dropped.id)
        lane.forced.append((message, reason))
        self._drain_soon(lane)

    def busy(self) -> bool:
        return bool(self._running())

    async def idle(self) -> None:
        """Wait until every lane is drained (tests, shutdown)."""
        while tasks := self._running():
            await asyncio.gather(*tasks, return_exceptions=True)

    def cancel(self) -> None:
        for task in self._running():
            task.cancel()

    def _running(self) -> list[asyncio.Task]:
        return [lane.task for lane in self._lanes.values() if lane.task and not lane.task.done()]

    def _lane(self, channel) -> _Lane:
        lane = self._lanes.get(channel.id)
        if lane is None:
            lane = self._lanes[channel.id] = _Lane(channel)
        return lane

    def _drain_soon(self, lane: _Lane) -> None:
        if lane.task is None or lane.task.done():
            lane.task = asyncio.create_task(self._drain(lane), name=f"lane-{lane.channel.id}")

    async def _drain(self, lane: _Lane) -> None:
        try:
            while lane.has_work():
                if lane.forced:
                    message, reason = lane.forced.popleft()
                    await self._answer(lane, message, reason)
                else:
                    lane.wants_decision = False
                    await self._decide(lane)
        finally:
            # No await since the loop ended, so no request slipped in between.
            if self._lanes.get(lane.channel.id) is lane and not lane.has_work():
                del self._lanes[lane.channel.id]

    async def _answer(self, lane: _Lane, message: discord.Message, reason: str) -> None:
        channel = lane.channel
        async with self.worker.turn():
            window = self.windows.get(channel.id)
            turns = window.turns(upto=message.id) if window is not None else []
            if not turns or turns[-1].turn_id != message.id:
                log_decision(channel, f"forced:{reason}", False, note="the message was deleted")
                return
            lane.done_upto = max(lane.done_upto, message.id)
            text, seconds = await self._generate(channel, turns)
        spoke = await self._post(channel, text or COULD_NOT_ANSWER, reply_to=message)
        log_decision(channel, f"forced:{reason}", spoke, seconds=seconds,
                     note="" if text else "no answer; said so")

    async def _decide(self, lane: _Lane) -> None:
        channel = lane.channel
        async with self.worker.turn():
            window = self.windows.get(channel.id)
            turns = window.turns() if window is not None else []
            # Nothing new since the last decision or answer, or the bot spoke last.
            if not turns or turns[-1].role != "user" or turns[-1].turn_id <= lane.done_upto:
                return
            lane.done_upto = turns[-1].turn_id
            threshold = chattiness_to_threshold(self.chattiness_for(channel))
            try:
                probability, seconds = await self.worker.decide(turns, channel.id)
            except Exception:
                log.exception("decision channel=%s reason=model failed; staying silent",
                              channel_label(channel))
                return
            speak = should_speak(probability, threshold)
            text = ""
            if speak:
                text, _ = await self._generate(channel, turns)
        spoke = bool(text) and await self._post(channel, text)
        log_decision(channel, "model", spoke, probability=probability, threshold=threshold, seconds=seconds,
                     note="empty reply" if speak and not text else "")

    async def _generate(self, channel, turns: list[Turn]) -> tuple[str, float | None]:
        """The reply text ('' when the model failed or said nothing) and the seconds it took."""
        try:
            async with channel.typing():
                return await self.worker.reply(turns, channel.id)
        except discord.HTTPException as error:
            log.warning("typing in %s failed: %s", channel_label(channel), error)
            return "", None
        except Exception:
            log.exception("reply generation failed in %s", channel_label(channel))
            return "", None

    async def _post(self, channel, text: str, reply_to: discord.Message | None = None) -> bool:
        try:
            sent = await post(channel, text, reply_to=reply_to)
        except discord.HTTPException as error:
            log.error("posting in %s failed: %s", channel_label(channel), error)
            return False
        # Record at once, so the next decision sees what the bot said even before
        # the gateway echoes it back (adding the echo again is harmless).
        window = self.windows.get(channel.id)
        for message in sent if window is not None else ():
            window.add(Turn.assistant(message.content, message.id))
        return bool(sent)
