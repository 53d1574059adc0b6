"""A Discord channel as the decision queue sees it (``bot.decisions.Room``).

The queue knows no Discord: it asks a room to show typing and to post, and
treats the room's ``errors`` as the front end failing (logged, never raised).
This adapter does both through discord.py and ``bot.sending.post`` (split to
fit, no pings, the reply fallback), and hands back the assistant turns the
posted messages became.
"""

from __future__ import annotations

import discord

from bot.sending import post
from models.turns import Turn


class DiscordRoom:
    errors = (discord.HTTPException,)

    def __init__(self, channel: discord.abc.Messageable) -> None:
        self.channel = channel

    @property
    def id(self) -> int:
        return self.channel.id

    @property
    def places(self) -> tuple[int, ...]:
        """Whose notes subfolders apply here: the server, the channel, a thread's parent channel."""
        guild = getattr(self.channel, "guild", None)
        ids = (getattr(guild, "id", None), self.channel.id, getattr(self.channel, "parent_id", None))
        return tuple(i for i in ids if i is not None)

    @property
    def name(self) -> str | None:
        return getattr(self.channel, "name", None)  # a DM channel has none

    def typing(self):
        return self.channel.typing()

    async def post(self, text: str, reply_to: discord.Message | None = None) -> list[Turn]:
        sent = await post(self.channel, text, reply_to=reply_to)
        return [Turn.assistant(message.content, message.id) for message in sent]
