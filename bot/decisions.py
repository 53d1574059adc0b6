"""Per-channel decisions: at most one waiting, forced replies queued, one log line each.

The core every front end shares: the Discord client (``bot.client``) and the
terminal chat (``bot.chat``) both record a message in the room's window, rule
on it with ``bot.rules``, and hand the ruling to ``DecisionQueue.route``. The
queue knows no front end: it talks to a room (``Room``: a Discord channel
through ``bot.discord_room.DiscordRoom``, or the terminal) and to the model
thread (``bot.worker``). With knowledge notes (``models.notes``), each decision
and reply gets the passages retrieval picks for the room's recent messages
(from the shared notes and the room's ``places``), and its log line names them.

Each room with work has a lane: a flag "the room changed, decide again" and
a queue of forced replies (mentions, replies to the bot, DMs). One task per
lane drains it, taking the model's turn for every step:

- a forced reply answers the window up to the message that asked, and replies
  to that message;
- a decision runs on the window as it is when the model becomes free, so a
  burst of messages that arrived while the model was busy becomes one decision
  on the newest state of the room; the model's speak probability is compared
  with the room's threshold by ``models.threshold.should_speak`` and nothing else.

Bounds: lanes exist only while they have work; a lane queues at most
``MAX_FORCED_PER_CHANNEL`` forced replies (beyond that the oldest is dropped
with a warning: that is a flood, not a conversation).

Failures stay inside: a model error is logged and the bot stays silent, except
that a forced reply says briefly it could not answer (``COULD_NOT_ANSWER``); a
front-end error (the room's ``errors``) is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from bot.rules import Action, Ruling
from bot.window import WindowStore
from bot.worker import ModelWorker
from models.threshold import chattiness_to_threshold, should_speak
from models.turns import Turn

log = logging.getLogger(__name__)

MAX_FORCED_PER_CHANNEL = 20
COULD_NOT_ANSWER = "Sorry, I couldn't come up with an answer to that just now."


class Message(Protocol):
    """A message as the queue sees it: its id orders it in the room's window."""

    id: int


class Room(Protocol):
    """Where a conversation happens, as the queue sees it (a Discord channel, the terminal)."""

    id: int  # the key of its window and of the engine's cache
    name: str | None  # for the log; None for a direct message
    errors: tuple[type[Exception], ...]  # the front end's own failures: logged, never raised

    def typing(self) -> contextlib.AbstractAsyncContextManager:
        """Shown while the model writes a reply."""

    async def post(self, text: str, reply_to: Message | None = None) -> list[Turn]:
        """Show ``text`` (replying to ``reply_to`` when given); the assistant turns it became."""

    # Optional: ``places``, the ids whose notes subfolders apply here (server, channel).


def channel_label(channel) -> str:
    name = getattr(channel, "name", None)
    return f"#{name}({channel.id})" if name else f"dm({channel.id})"


def _served_failure(error: Exception) -> bool:
    """A served model that is down, slow or erroring: expected, worth one line rather than a traceback."""
    from models.served import ServedError  # deferred: it imports the engine, and so torch

    return isinstance(error, ServedError)


def log_decision(channel, reason: str, spoke: bool, *, probability: float | None = None,
                 threshold: float | None = None, seconds: float | None = None, note: str = "",
                 passages: Sequence = (), backend: str = "") -> None:
    """The one line per decision a self-hoster reads to see why it spoke or not."""
    parts = [f"decision channel={channel_label(channel)} reason={reason} spoke={'yes' if spoke else 'no'}"]
    if probability is not None:
        parts.append(f"p={probability:.3f} threshold={threshold:.2f}")
    if seconds is not None:
        parts.append(f"latency={seconds:.3f}s")
    if passages:
        parts.append("notes=" + ",".join(passage.label for passage in passages))
    if backend:
        parts.append(f"backend={backend}")
    if note:
        parts.append(f"({note})")
    log.info(" ".join(parts))


@dataclass
class _Lane:
    room: Room
    wants_decision: bool = False
    forced: deque[tuple[Message, str]] = field(default_factory=deque)
    done_upto: int = 0  # newest message id already answered or decided on
    task: asyncio.Task | None = None

    def has_work(self) -> bool:
        return self.wants_decision or bool(self.forced)


class DecisionQueue:
    def __init__(self, worker: ModelWorker, windows: WindowStore,
                 chattiness_for: Callable[[Room], float], notes=None) -> None:
        self.worker = worker
        self.windows = windows
        self.chattiness_for = chattiness_for
        self.notes = notes  # models.notes.Notes, or None
        self._lanes: dict[int, _Lane] = {}

    def route(self, room: Room, message: Message, ruling: Ruling) -> None:
        """Act on the fixed rules' ruling about ``message``, already in the room's window."""
        if ruling.action is Action.REPLY:
            self.force_reply(room, message, ruling.reason)
        elif ruling.action is Action.ASK_MODEL:
            self.ask_model(room)
        elif ruling.action is Action.SILENT:
            log_decision(room, f"rule:{ruling.reason}", False)

    def ask_model(self, room: Room) -> None:
        """The room changed in a way the model should judge; folds into a waiting decision."""
        lane = self._lane(room)
        lane.wants_decision = True
        self._drain_soon(lane)

    def force_reply(self, room: Room, message: Message, reason: str) -> None:
        """Reply to ``message`` whatever the model thinks; never folded away."""
        lane = self._lane(room)
        if len(lane.forced) >= MAX_FORCED_PER_CHANNEL:
            dropped, _ = lane.forced.popleft()
            log.warning("forced replies queue full in %s: dropping the oldest (message %s)",
                        channel_label(room), dropped.id)
        lane.forced.append((message, reason))
        self._drain_soon(lane)

    def busy(self) -> bool:
        return bool(self._running())

    async def idle(self) -> None:
        """Wait until every lane is drained (tests, shutdown, the terminal between lines)."""
        while tasks := self._running():
            await asyncio.gather(*tasks, return_exceptions=True)

    def cancel(self) -> None:
        for task in self._running():
            task.cancel()

    def _running(self) -> list[asyncio.Task]:
        return [lane.task for lane in self._lanes.values() if lane.task and not lane.task.done()]

    def _lane(self, room: Room) -> _Lane:
        lane = self._lanes.get(room.id)
        if lane is None:
            lane = self._lanes[room.id] = _Lane(room)
        return lane

    def _drain_soon(self, lane: _Lane) -> None:
        if lane.task is None or lane.task.done():
            lane.task = asyncio.create_task(self._drain(lane), name=f"lane-{lane.room.id}")

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
            if self._lanes.get(lane.room.id) is lane and not lane.has_work():
                del self._lanes[lane.room.id]

    async def _answer(self, lane: _Lane, message: Message, reason: str) -> None:
        room = lane.room
        async with self.worker.turn():
            window = self.windows.get(room.id)
            turns = window.turns(upto=message.id) if window is not None else []
            if not turns or turns[-1].turn_id != message.id:
                log_decision(room, f"forced:{reason}", False, note="the message was deleted")
                return
            lane.done_upto = max(lane.done_upto, message.id)
            passages = await self._notes_for(room, turns)
            text, seconds = await self._generate(room, turns, passages)
        spoke = await self._post(room, text or COULD_NOT_ANSWER, reply_to=message)
        log_decision(room, f"forced:{reason}", spoke, seconds=seconds,
                     note="" if text else "no answer; said so", passages=passages,
                     backend=self._backend(replies=True))

    async def _decide(self, lane: _Lane) -> None:
        room = lane.room
        async with self.worker.turn():
            window = self.windows.get(room.id)
            turns = window.turns() if window is not None else []
            # Nothing new since the last decision or answer, or the bot spoke last.
            if not turns or turns[-1].role != "user" or turns[-1].turn_id <= lane.done_upto:
                return
            lane.done_upto = turns[-1].turn_id
            threshold = chattiness_to_threshold(self.chattiness_for(room))
            passages = await self._notes_for(room, turns)
            try:
                probability, seconds = await self.worker.decide(turns, room.id, [p.text for p in passages])
            except Exception as error:
                if _served_failure(error):  # an unreachable or failing server: expected, one line
                    log.warning("decision channel=%s reason=model failed (%s) spoke=no backend=%s",
                                channel_label(room), error, self._backend())
                else:
                    log.exception("decision channel=%s reason=model failed; staying silent", channel_label(room))
                return
            speak = should_speak(probability, threshold)
            text = ""
            if speak:
                text, _ = await self._generate(room, turns, passages)
        spoke = bool(text) and await self._post(room, text)
        log_decision(room, "model", spoke, probability=probability, threshold=threshold, seconds=seconds,
                     note="empty reply" if speak and not text else "", passages=passages,
                     backend=self._backend())

    async def _notes_for(self, room: Room, turns: list[Turn]) -> list:
        """The passages to show the model for the room's recent messages ([] without notes).

        On the model thread: a changed notes file is re-indexed there, never on the event loop.
        """
        if self.notes is None:
            return []
        texts = [turn.text for turn in turns if turn.role == "user"]
        try:
            passages, _ = await self.worker.run(self.notes.for_window, texts, room.id, getattr(room, "places", ()))
        except Exception:
            log.exception("notes retrieval failed in %s; going on without notes", channel_label(room))
            return []
        return passages

    async def _generate(self, room: Room, turns: list[Turn], passages: Sequence = ()) -> tuple[str, float | None]:
        """The reply text ('' when the model failed or said nothing) and the seconds it took."""
        try:
            async with room.typing():
                return await self.worker.reply(turns, room.id, [p.text for p in passages])
        except room.errors as error:
            log.warning("typing in %s failed: %s", channel_label(room), error)
            return "", None
        except Exception as error:
            if _served_failure(error):
                log.warning("reply generation failed in %s: %s", channel_label(room), error)
            else:
                log.exception("reply generation failed in %s", channel_label(room))
            return "", None

    def _backend(self, replies: bool = False) -> str:
        """Where the decision (or the reply) was made: 'in-process', or the served model and its URL."""
        info = self.worker.describe()
        return (replies and info.get("reply_backend")) or info.get("backend", "in-process")

    async def _post(self, room: Room, text: str, reply_to: Message | None = None) -> bool:
        try:
            said = await room.post(text, reply_to=reply_to)
        except room.errors as error:
            log.error("posting in %s failed: %s", channel_label(room), error)
            return False
        # Record at once, so the next decision sees what the bot said even before
        # the front end echoes it back (Discord's gateway does; adding the echo again is harmless).
        window = self.windows.get(room.id)
        for turn in said if window is not None else ():
            window.add(turn)
        return bool(said)
