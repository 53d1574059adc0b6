"""Posting the bot's words to Discord: split to fit, never pinging anyone.

Discord refuses messages over 2,000 characters, a crash several peers shipped.
Text is split on paragraph, line, then sentence boundaries, then spaces, and
only as a last resort mid-word. The markers ``(silence)``/``(response)`` are
stripped again here, whatever the engine did. Every post carries allowed
mentions "none": ``@everyone``, ``@here``, roles and users written by the model
show as text and notify nobody, and a reply does not ping the person asked.
"""

from __future__ import annotations

import logging
import re

import discord

from models.turns import strip_markers

DISCORD_MESSAGE_CHARS = 2000
NO_PINGS = discord.AllowedMentions.none()
# Discord's answers to a reply it will not take: 160002 "Cannot reply without permission
# to read message history", 50013 "Missing Permissions".
REPLY_REFUSED_CODES = frozenset({160002, 50013})
MAX_WARNED_CHANNELS = 1000

log = logging.getLogger(__name__)
_warned_channels: set[int] = set()  # channels whose refused reply was already logged as a warning

_SENTENCE_END = re.compile(r"[.!?…](?=\s)")


def split_for_discord(text: str, limit: int = DISCORD_MESSAGE_CHARS) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` characters at the most natural boundary."""
    pieces = []
    text = text.strip()
    while len(text) > limit:
        cut = _cut_point(text[: limit + 1], limit)
        pieces.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        pieces.append(text)
    return [p for p in pieces if p]


def _cut_point(head: str, limit: int) -> int:
    """Where to cut, looking only at the first ``limit + 1`` characters; never in the first half
    when a later boundary exists, so the pieces do not come out tiny."""
    floor = limit // 2
    for boundary in ("\n\n", "\n"):
        at = head.rfind(boundary, floor)
        if at > 0:
            return at + len(boundary)
    sentence_ends = [m.end() for m in _SENTENCE_END.finditer(head, floor)]
    if sentence_ends:
        return sentence_ends[-1]
    at = head.rfind(" ", floor)
    return at + 1 if at > 0 else limit


async def post(channel: discord.abc.Messageable, text: str,
               reply_to: discord.Message | None = None) -> list[discord.Message]:
    """Post ``text`` (split as needed); the first piece replies to ``reply_to`` when given.

    Discord refuses the reply form without Read Message History; then the text
    goes out as a plain message that names the asker (shown as their name,
    pinging nobody), so a forced answer is never lost.
    Returns the messages created; none when the text is empty after cleaning.
    """
    pieces = split_for_discord(strip_markers(text))
    if not pieces:
        return []
    if reply_to is None:
        return [await channel.send(piece, allowed_mentions=NO_PINGS) for piece in pieces]
    try:
        first = await channel.send(pieces[0], reference=reply_to.to_reference(fail_if_not_exists=False),
                                   allowed_mentions=NO_PINGS)
    except discord.Forbidden as error:
        if error.code not in REPLY_REFUSED_CODES:
            raise
        _log_refused_reply(channel, error)
        return await post(channel, f"{reply_to.author.mention} {strip_markers(text).strip()}")
    return [first] + [await channel.send(piece, allowed_mentions=NO_PINGS) for piece in pieces[1:]]


def _log_refused_reply(channel, error: discord.HTTPException) -> None:
    level = logging.DEBUG if channel.id in _warned_channels else logging.WARNING
    if len(_warned_channels) < MAX_WARNED_CHANNELS:
        _warned_channels.add(channel.id)
    log.log(level, "Discord refused a reply in channel %s (%s); answering with a plain message that names "
                   "the asker instead. Give the bot Read Message History there (docs/discord-setup.md).",
            channel.id, error.text or error.code)
