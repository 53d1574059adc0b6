"""Run Chime In in Discord: ``python -m bot``.

Configuration comes from the environment and ``.env`` (see ``.env.example``;
at least ``DISCORD_TOKEN``). The model loads first (the embedded default needs
no download), then the bot connects and reads every channel it may read. The
Message Content intent must be enabled for the bot in the Discord developer
portal (see docs/bot.md). Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import sys

import aiohttp
import discord

from bot.channel_settings import ChannelSettingsError, ChannelSettingsStore
from bot.check import TOKEN_SHAPE, WRONG_TOKEN_SHAPE
from bot.client import ChimeIn
from bot.settings import TOKEN_ENV, SettingsError, load_settings

log = logging.getLogger("bot")


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m bot run", description=__doc__.replace("``", ""),
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args(argv)
    try:
        settings = load_settings(require_token=True)
        controls = ChannelSettingsStore(settings.state_dir)
        notes = settings.load_notes()
    except (SettingsError, ChannelSettingsError) as error:
        print(error, file=sys.stderr)
        return 2
    # Before the model loads: a wrong paste should not cost a model load to find out.
    if not TOKEN_SHAPE.fullmatch(settings.discord_token.get_secret_value()):
        print(f"Chime In cannot start; fix its configuration:\n  {TOKEN_ENV}: {WRONG_TOKEN_SHAPE}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("discord").setLevel(max(logging.INFO, logging.getLevelName(settings.log_level)))

    # Deferred: torch and transformers load only once the configuration is known to be good.
    from bot.engines import build_engine
    from models.library_logs import quiet_libraries
    from models.loading import ModelLoadError

    quiet_libraries()
    log.info("loading model %s (adapter: %s)", settings.model, settings.adapter)
    try:
        engine = build_engine(settings)
    except ModelLoadError as error:
        log.error("cannot load the model: %s", error)
        return 1

    if notes is not None:
        log.info("notes: %s", notes.report().summary())
    client = ChimeIn(settings=settings, engine=engine, controls=controls, notes=notes)
    try:
        client.run(settings.discord_token.get_secret_value(), log_handler=None)
    except discord.LoginFailure:
        log.error("Discord refused the token: check DISCORD_TOKEN (Developer Portal -> Bot -> Reset Token)")
        return 1
    except discord.PrivilegedIntentsRequired:
        log.error("the Message Content intent is off: enable it under Developer Portal -> Bot -> "
                  "Privileged Gateway Intents, then start again")
        return 1
    except (discord.HTTPException, discord.GatewayNotFound, discord.ConnectionClosed,
            aiohttp.ClientError, OSError, TimeoutError) as error:
        # Only the first login and connection land here: once connected, discord.py reconnects itself.
        log.error("cannot reach Discord: %s (check the network, a proxy or firewall, and "
                  "https://discordstatus.com; then start again)", " ".join(str(error).split()) or type(error).__name__)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
