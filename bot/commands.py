"""Per-channel slash commands, for people with the Manage Channel permission.

- ``/chattiness level``: how readily it chimes in on its own here (0 never, 1 whenever it can).
- ``/quiet on``: only speak when @mentioned or replied to.
- ``/status``: model, adapter, chattiness, quiet mode, recent decision latency.
- ``/forget``: drop this channel's conversation from memory (and don't read it back).

The permission is the commands' default; server admins can change who may use
them under Server Settings -> Integrations. Answers are ephemeral. Changes are
saved at once (``bot.channel_settings``) and survive restarts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot.channel_settings import ChannelSettingsError
from models.threshold import chattiness_to_threshold

if TYPE_CHECKING:
    from bot.client import ChimeIn

    Interaction = discord.Interaction[ChimeIn]
else:
    Interaction = discord.Interaction

log = logging.getLogger(__name__)


def _channel_only(command):
    return app_commands.guild_only()(app_commands.default_permissions(manage_channels=True)(command))


@_channel_only
@app_commands.command(description="How readily the bot chimes in here on its own (0 never, 1 whenever).")
@app_commands.describe(level="0 = only when asked; 1 = on every message; /status shows the default")
async def chattiness(interaction: Interaction, level: app_commands.Range[float, 0.0, 1.0]) -> None:
    if not await _saved(interaction, chattiness=level):
        return
    await interaction.response.send_message(
        f"Chattiness here is now {level:.2f}: I chime in on my own when I'm at least "
        f"{chattiness_to_threshold(level):.0%} sure it helps. Mentions and replies to me always get an answer.",
        ephemeral=True)


@_channel_only
@app_commands.command(description="Quiet mode: the bot only speaks here when mentioned or replied to.")
@app_commands.describe(on="true = only when mentioned; false = chime in on its own again")
async def quiet(interaction: Interaction, on: bool) -> None:
    if not await _saved(interaction, quiet=on):
        return
    text = ("Quiet mode on: I'll only speak here when you mention me or reply to me." if on
            else "Quiet mode off: I'll chime in here on my own when I can help.")
    await interaction.response.send_message(text, ephemeral=True)


@_channel_only
@app_commands.command(description="The bot's model, chattiness and recent decision speed in this channel.")
async def status(interaction: Interaction) -> None:
    text = status_text(interaction.client, interaction.channel)
    await interaction.response.send_message(text, ephemeral=True)


@_channel_only
@app_commands.command(description="Forget this channel's conversation (not read back after a restart).")
async def forget(interaction: Interaction) -> None:
    bot = interaction.client
    try:
        bot.forget(interaction.channel)
    except ChannelSettingsError as error:
        await _could_not_save(interaction, error)
        return
    # Answer first: Discord wants a response within 3 s, and the engine's cache can
    # only be dropped once the model is free, which may take a whole generation.
    await interaction.response.send_message(
        "Forgotten: I no longer remember the conversation here before this point.", ephemeral=True)
    await bot.worker.forget(interaction.channel_id)


async def _saved(interaction: Interaction, **changes) -> bool:
    """Store this channel's change; on a failed write say so (nothing changed, on disk or in memory)."""
    try:
        interaction.client.controls.update(interaction.channel_id, **changes)
    except ChannelSettingsError as error:
        await _could_not_save(interaction, error)
        return False
    return True


async def _could_not_save(interaction: Interaction, error: ChannelSettingsError) -> None:
    log.error("%s", error)
    await interaction.response.send_message(
        "Sorry, I could not save that (the bot's state folder is not writable), so nothing changed. "
        "The bot's log says why.", ephemeral=True)


def status_text(bot: ChimeIn, channel) -> str:
    info = bot.worker.describe()
    controls = bot.controls_for(channel)
    level = bot.chattiness_for(channel)
    median = bot.worker.median_decision_seconds()
    window = bot.windows.get(channel.id)
    lines = [
        f"Model: {info.get('model')} ({info.get('device', '?')}, {info.get('dtype', '?')})",
        f"Adapter: {info.get('adapter') or 'none'}",
        f"Chattiness: {level:.2f}" + ("" if controls.chattiness is not None else " (default)"),
        f"Quiet mode: {'on' if controls.quiet else 'off'}",
        "Recent decision latency: " + (f"{median * 1000:.0f} ms (median of the last "
                                       f"{len(bot.worker.decision_seconds)})" if median is not None
                                       else "no decisions yet"),
        f"Messages in memory here: {len(window) if window is not None else 0}",
    ]
    if not bot.is_allowed(channel):
        lines.append("I don't read this channel (see CHIMEIN_CHANNELS and CHIMEIN_IGNORED_CHANNELS).")
    return "\n".join(lines)


def register(tree: app_commands.CommandTree) -> None:
    for command in (chattiness, quiet, status, forget):
        tree.add_command(command)
