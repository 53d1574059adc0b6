"""The fixed rules that run before the model (the hard parts of docs/policy.md).

In order:

1. The bot's own message: recorded as an assistant turn, never answered.
2. Another bot that does not @mention this one: context only, never answered
   (two bots answering each other is the classic loop). One that does is
   answered within the loop guard's budget (``BotReplyGuard``).
3. An @mention of the bot, a reply to one of its messages, or a DM: a forced
   reply that the model cannot veto.
4. Quiet mode in the channel: silent.
5. A message that @mentions other people but not the bot is aimed at them:
   silent, without a model call.
6. Everything else: the model decides.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from enum import Enum

import discord

from bot.window import ChannelWindow


class Action(Enum):
    IGNORE = "ignore"  # the bot's own message
    SILENT = "silent"  # a rule says stay quiet
    REPLY = "reply"  # forced reply
    ASK_MODEL = "ask_model"


@dataclass(frozen=True)
class MessageFacts:
    """What the rules need to know about one message, with no Discord objects inside."""

    is_own: bool = False
    author_is_bot: bool = False
    is_dm: bool = False
    mentions_bot: bool = False
    replies_to_bot: bool = False
    mentions_others: bool = False
    quiet: bool = False


@dataclass(frozen=True)
class Ruling:
    action: Action
    reason: str  # for the decision log: "mention", "other bot", ...


def rule_for(facts: MessageFacts) -> Ruling:
    if facts.is_own:
        return Ruling(Action.IGNORE, "own message")
    if facts.author_is_bot and not facts.mentions_bot:
        return Ruling(Action.SILENT, "other bot")
    if facts.mentions_bot:
        return Ruling(Action.REPLY, "mention")
    if facts.replies_to_bot:
        return Ruling(Action.REPLY, "reply to bot")
    if facts.is_dm:
        return Ruling(Action.REPLY, "dm")
    if facts.quiet:
        return Ruling(Action.SILENT, "quiet mode")
    if facts.mentions_others:
        return Ruling(Action.SILENT, "mentions others")
    return Ruling(Action.ASK_MODEL, "model")


def facts_about(message: discord.Message, bot_id: int, window: ChannelWindow | None,
                quiet: bool) -> MessageFacts:
    """Read the facts off a Discord message; ``window`` answers "is the replied-to message ours?"."""
    guild = message.guild
    bot_role = guild.self_role if guild is not None else None
    mentioned_ids = {user.id for user in message.mentions}
    other_roles = [role for role in message.role_mentions if role != bot_role]
    return MessageFacts(
        is_own=message.author.id == bot_id,
        author_is_bot=message.author.bot,
        is_dm=guild is None,
        mentions_bot=bot_id in mentioned_ids or (bot_role is not None and bot_role in message.role_mentions),
        replies_to_bot=_replies_to(message, bot_id, window),
        mentions_others=bool(mentioned_ids - {bot_id}) or bool(other_roles),
        quiet=quiet,
    )


def _replies_to(message: discord.Message, bot_id: int, window: ChannelWindow | None) -> bool:
    reference = message.reference
    if reference is None or reference.message_id is None:
        return False
    parent = reference.resolved
    if isinstance(parent, discord.Message):
        return parent.author.id == bot_id
    # Discord did not include the parent (or it was deleted): the window may still know it.
    return window is not None and window.role_of(reference.message_id) == "assistant"


class BotReplyGuard:
    """The loop guard: at most ``limit`` answers to other bots per channel in ``span_seconds``.

    Rule 2 keeps bots that do not @mention this one from being answered; this
    bounds the rest. Another bot that @mentions this one after each of its posts
    was answered every time, and two such bots would talk forever. Past the
    limit the bot stays silent in that channel until the oldest answer leaves
    the span, and says so in one log line per silence.

    Bound: one deque of at most ``limit`` times per channel that answered a bot,
    and at most ``MAX_CHANNELS`` channels (the stalest is forgotten first).
    """

    MAX_CHANNELS = 1000

    def __init__(self, limit: int, span_seconds: float) -> None:
        self.limit = limit
        self.span_seconds = span_seconds
        self._answered: OrderedDict[int, deque[float]] = OrderedDict()
        self._silenced: set[int] = set()  # channels whose silence was already logged

    def allow(self, channel_id: int, now: float | None = None) -> bool:
        """True (and counted) when one more answer to a bot in this channel is within the limit."""
        now = time.monotonic() if now is None else now
        answered = self._answered.pop(channel_id, None) or deque(maxlen=max(self.limit, 1))
        while answered and now - answered[0] >= self.span_seconds:
            answered.popleft()
        allowed = len(answered) < self.limit
        if allowed:
            answered.append(now)
            self._silenced.discard(channel_id)
        if answered:
            self._answered[channel_id] = answered
            while len(self._answered) > self.MAX_CHANNELS:
                stale, _ = self._answered.popitem(last=False)
                self._silenced.discard(stale)
        return allowed

    def first_refusal(self, channel_id: int) -> bool:
        """True once per silence: whether the caller should log that the guard is closed here."""
        if channel_id in self._silenced:
            return False
        self._silenced.add(channel_id)
        return True
