"""Running the real bot against the fake Discord, for the end-to-end tests.

``discord_world()`` starts a fake Discord on 127.0.0.1 and points discord.py at
it; ``running_bot()`` starts a ``ChimeIn`` client on it (and stops it after, so
a test can restart the bot against the same fake); ``settle()`` waits until
the bot has seen what was sent and finished deciding.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from bot.channel_settings import ChannelSettingsStore
from bot.client import ChimeIn
from bot.settings import Settings
from tests.fakes.discord_server import FakeDiscord

TOKEN = "fake.bot.token"


@contextlib.asynccontextmanager
async def discord_world(*, heartbeat_seconds: float = 0.5):
    fake = FakeDiscord(heartbeat_seconds=heartbeat_seconds)
    await fake.start()
    try:
        with fake.pointed_at():
            yield fake
    finally:
        await fake.stop()


@contextlib.asynccontextmanager
async def running_bot(fake: FakeDiscord, engine, state_dir: Path, **settings):
    config = Settings(_env_file=None, DISCORD_TOKEN=TOKEN, state_dir=state_dir, **settings)
    client = ChimeIn(settings=config, engine=engine, controls=ChannelSettingsStore(state_dir))
    task = asyncio.create_task(client.start(TOKEN))
    ready = asyncio.create_task(client.wait_until_ready())
    await asyncio.wait({task, ready}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        ready.cancel()
        await client.close()
        raise RuntimeError(f"bot did not get ready: {task.exception() if task.done() else 'timeout'}")
    try:
        yield client
    finally:
        await client.close()
        await asyncio.wait_for(task, 10)


async def settle(client: ChimeIn, seconds: float = 0.3) -> None:
    """Let gateway events arrive, then wait for every pending decision to finish."""
    await asyncio.sleep(seconds)
    await client.decisions.idle()
    await asyncio.sleep(0.05)
