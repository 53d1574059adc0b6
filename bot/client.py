"""The Discord client: gateway events in, windows and decisions out.

Flow of one message: ``on_message`` checks the channel is allowed, builds the
channel's window from history if it is not in memory, records the message as a
turn, applies the fixed rules (``bot.rules``), and hands what is left to the
decision queue (``bot.decisions``), which runs the model on its own thread.
Edits and deletions keep the windows true to Discord.

Everything the client needs is passed to its constructor; start-up work (slash
command sync) happens in ``setup_hook``, never in ``on_ready``.
"""

from __future__ import annotations

import asyncio
import logging

import discord
from discord import app_commands

from bot import commands
from bot.channel_settings import ChannelControls, ChannelSettingsStore
from bot.decisions import DecisionQueue, channel_label, log_decision
from bot.discord_room import DiscordRoom
from bot.discord_turns import names_of_bot, turn_for
from bot.rules import Action, BotReplyGuard, facts_about, rule_for
from bot.settings import Settings
from bot.status import WRITE_EVERY_SECONDS, write_status
from bot.window import MAX_WINDOW_MESSAGES, WindowStore
from bot.worker import ModelWorker
from models.turns import Turn

log = logging.getLogger(__name__)

# A sync stuck behind a long rate limit must not hold up reading messages for ever.
SYNC_TIMEOUT_SECONDS = 30
MAX_PERMISSION_CHECKED_CHANNELS = 10_000  # past this, channels are checked again (more warnings, no growth)


def chime_in_intents() -> discord.Intents:
    """Only what reading the room needs. Message content is privileged: enable it in the portal."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = True
    return intents


class ChimeIn(discord.Client):
    def __init__(self, *, settings: Settings, engine, controls: ChannelSettingsStore, notes=None) -> None:
        # No message cache: the windows hold what the bot needs, and nothing else is kept.
        super().__init__(intents=chime_in_intents(), allowed_mentions=discord.AllowedMentions.none(),
                         max_messages=None)
        self.settings = settings
        self.controls = controls
        self.worker = ModelWorker(engine)
        self.windows = WindowStore()
        self.decisions = DecisionQueue(self.worker, self.windows, lambda room: self.chattiness_for(room.channel),
                                       notes=notes)
        # CHIMEIN_CHATTINESS when set, else the one the loaded adapter was tuned for.
        self.default_chattiness = settings.default_chattiness(engine.describe())
        self.tree = app_commands.CommandTree(self)
        self.bot_replies = BotReplyGuard(settings.bot_replies, settings.bot_reply_seconds)
        self._permissions_checked: set[int] = set()  # channels whose permissions were looked at once
        self._status_task: asyncio.Task | None = None

    async def setup_hook(self) -> None:
        commands.register(self.tree)
        self._status_task = asyncio.create_task(self._keep_status_fresh())
        try:
            synced = await asyncio.wait_for(self.tree.sync(), SYNC_TIMEOUT_SECONDS)
        except Exception as error:  # whatever the sync met, the bot still reads and answers
            log.error("could not sync slash commands (the bot still reads and answers): %s: %s",
                      type(error).__name__, error)
        else:
            log.debug("synced %d slash commands", len(synced))

    async def on_ready(self) -> None:
        names = ", ".join(names_of_bot(self.user, None, self.settings.bot_names))
        allowed = self.settings.channels
        scope = f"{len(allowed)} channels" if allowed else "all readable channels"
        log.info("connected as %s (%s); model %s; reading %s", self.user, names,
                 self.worker.describe().get("model"), scope)
        self._write_status()

    async def on_resumed(self) -> None:
        self._write_status()

    async def on_disconnect(self) -> None:
        self._write_status()

    def _write_status(self) -> None:
        """Tell the container's health check (``python -m bot check --connected``) how we are."""
        try:
            write_status(self.settings.state_dir, self.is_ready() and not self.ws_closed)
        except OSError as error:
            log.warning("could not write the status file in %s: %s", self.settings.state_dir, error)

    @property
    def ws_closed(self) -> bool:
        return self.ws is None or not self.ws.open

    async def _keep_status_fresh(self) -> None:
        while not self.is_closed():
            self._write_status()
            await asyncio.sleep(WRITE_EVERY_SECONDS)

    async def close(self) -> None:
        if self._status_task is not None:
            self._status_task.cancel()
        self.decisions.cancel()
        await super().close()
        self.worker.close()

    # -- what the rest of the bot asks ---------------------------------------------

    def is_allowed(self, channel) -> bool:
        """DMs unless switched off; otherwise the configured channels (and their threads), or all
        when none are, never the ignored ones."""
        if isinstance(channel, discord.DMChannel):
            return self.settings.dms
        ids = {channel.id, getattr(channel, "parent_id", None)}
        if ids & self.settings.ignored_channels:
            return False
        return not self.settings.channels or bool(ids & self.settings.channels)

    def is_blocked(self, author) -> bool:
        """A blocked user, or a member with a blocked role (roles exist only in servers)."""
        if author.id in self.settings.blocked_users:
            return True
        roles = getattr(author, "roles", ())
        return any(role.id in self.settings.blocked_roles for role in roles)

    def controls_for(self, channel) -> ChannelControls:
        return self.controls.get(channel.id, getattr(channel, "parent_id", None))

    def chattiness_for(self, channel) -> float:
        return self.controls_for(channel).chattiness_or(self.default_chattiness)

    def turn_for(self, message: discord.Message) -> Turn | None:
        """The message as the model reads it; None for what it must not read (blocked authors)."""
        if self.is_blocked(message.author):
            return None
        names = names_of_bot(self.user, message.guild, self.settings.bot_names)
        return turn_for(message, self.user.id, names)

    def forget(self, channel) -> None:
        """Drop the channel's window; history before now is not read back, even after a restart.

        The engine's cache of the channel is dropped separately (``worker.forget``),
        since that waits for the model to be free.
        """
        now = discord.utils.time_snowflake(discord.utils.utcnow())
        self.controls.update(channel.id, forgotten_before=now)  # first: raises when it cannot be saved
        self.windows.reset(channel.id)

    # -- gateway events ------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        channel = message.channel
        if not self.is_allowed(channel):
            return
        turn = self.turn_for(message)
        if turn is None:
            return
        self._check_permissions_once(channel)
        window = await self.windows.load(channel.id, lambda: self._history(message))
        window.add(turn)
        controls = self.controls_for(channel)
        ruling = rule_for(facts_about(message, self.user.id, window, controls.quiet))
        if ruling.action is Action.REPLY and message.author.bot and not self.bot_replies.allow(channel.id):
            if self.bot_replies.first_refusal(channel.id):
                log.warning("loop guard: answered other bots %d times in %s within %.0f s; silent to bots "
                            "there until that span has passed (CHIMEIN_BOT_REPLIES, CHIMEIN_BOT_REPLY_SECONDS)",
                            self.settings.bot_replies, channel_label(channel), self.settings.bot_reply_seconds)
            log_decision(channel, "rule:loop guard", False)
        else:
            self.decisions.route(DiscordRoom(channel), message, ruling)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        window = self.windows.get(payload.channel_id)
        if window is None:
            return
        turn = self.turn_for(payload.message)
        if turn is None:
            window.remove(payload.message_id)
        else:
            window.update(turn)

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        window = self.windows.get(payload.channel_id)
        if window is not None:
            window.remove(payload.message_id)

    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        window = self.windows.get(payload.channel_id)
        for message_id in payload.message_ids if window is not None else ():
            window.remove(message_id)

    def _check_permissions_once(self, channel) -> None:
        """Warn once per channel about a missing Read Message History.

        Without it Discord refuses replies (the bot then answers with plain
        messages that name the asker) and history reads come back empty, not
        as an error, so only the channel's permissions tell.
        """
        guild = getattr(channel, "guild", None)
        if guild is None or channel.id in self._permissions_checked or guild.me is None:
            return
        if len(self._permissions_checked) < MAX_PERMISSION_CHECKED_CHANNELS:
            self._permissions_checked.add(channel.id)
        if not channel.permissions_for(guild.me).read_message_history:
            log.warning("no Read Message History in %s: answers there are plain messages naming the asker "
                        "instead of replies, and its conversation is not read back after a restart; grant it "
                        "(docs/discord-setup.md, step 2)", channel_label(channel))

    async def _history(self, message: discord.Message) -> list[Turn]:
        """The turns before ``message`` from Discord's history, after the channel's last /forget."""
        forgotten_before = self.controls_for(message.channel).forgotten_before or 0
        turns = []
        try:
            async for earlier in message.channel.history(limit=MAX_WINDOW_MESSAGES, before=message):
                if earlier.id <= forgotten_before:
                    break
                if (turn := self.turn_for(earlier)) is not None:
                    turns.append(turn)
        except discord.HTTPException as error:
            # Usually a missing Read Message History permission; the window starts empty.
            log.warning("cannot read history of %s: %s", channel_label(message.channel), error)
        log.debug("rebuilt %s from history: %d turns", channel_label(message.channel), len(turns))
        return turns
