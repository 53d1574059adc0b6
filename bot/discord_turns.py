"""What the model sees of a Discord message: one turn, in the names the model knows.

The model knows the bot by one name, ``assistant`` (see docs/design.md,
"The model's text"). So before a message enters a window, a mention of the bot
(``<@id>``/``<@!id>``) becomes ``@assistant``, the bot's own names and the
configured aliases become ``assistant``, and other mentions become the display
names people see (``@Maya``, ``@moderators``, ``#general``). The author is
the display name. The bot's own messages are assistant turns, as posted.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import discord

from models.names import rewrite_bot_names
from models.turns import BOT_NAME, Turn

# Joins, pins, thread starts and the like are not conversation.
CONVERSATION_TYPES = frozenset({discord.MessageType.default, discord.MessageType.reply})
MENTION = re.compile(r"<(@!?|@&|#)(\d+)>")


def names_of_bot(me: discord.abc.User, guild: discord.Guild | None,
                 aliases: Iterable[str]) -> tuple[str, ...]:
    """Every name people may call the bot by here: its account names, its nickname, the aliases."""
    names = [me.name, me.global_name or "", me.display_name]
    if guild is not None and guild.me is not None:
        names.append(guild.me.display_name)
    names.extend(aliases)
    return tuple(dict.fromkeys(n for n in names if n))


def model_text(message: discord.Message, bot_id: int, bot_names: Iterable[str]) -> str:
    """The message's text with mentions and the bot's names rewritten, attachments named."""
    users = {user.id: user.display_name for user in message.mentions}
    roles = {role.id: role.name for role in message.role_mentions}

    def readable(match: re.Match) -> str:
        kind, ident = match[1], int(match[2])
        if kind in ("@", "@!"):
            return "@" + (BOT_NAME if ident == bot_id else users.get(ident, "someone"))
        if kind == "@&":
            return "@" + roles.get(ident, "role")
        channel = message.guild.get_channel_or_thread(ident) if message.guild else None
        return "#" + (channel.name if channel is not None else "channel")

    text = rewrite_bot_names(MENTION.sub(readable, message.content), tuple(bot_names))
    files = " ".join(f"[{attachment.filename}]" for attachment in message.attachments)
    return f"{text} {files}".strip()


def turn_for(message: discord.Message, bot_id: int, bot_names: Iterable[str]) -> Turn | None:
    """The window turn for a message, or None for a message that is not conversation."""
    if message.type not in CONVERSATION_TYPES:
        return None
    if message.author.id == bot_id:
        return Turn.assistant(message.content, message.id) if message.content else None
    text = model_text(message, bot_id, bot_names)
    return Turn.user(message.author.display_name, text, message.id) if text else None
