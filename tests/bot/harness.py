"""Running the real bot against the fake Discord, for the end-to-end tests.

``discord_world()`` starts a fake Discord on 127.0.0.1 and points discord.py at
it; ``running_bot()`` starts a ``ChimeIn`` client on it (and stops it after, so
a test can restart the bot against the same fake); ``settle()`` waits until
the bot has handled every message the fake sent it and finished deciding, so
tests wait on events rather than on guessed delays.
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
async def discord_world(*, heartbeat_seconds: float = 0.5, **options):
    """A started fake Discord; ``options`` go to ``FakeDiscord`` (e.g. ``read_message_history=False``)."""
    fake = FakeDiscord(heartbeat_seconds=heartbeat_seconds, **options)
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
    _count_handled_messages(client, fake)
    task = asyncio.create_task(client.start(TOKEN))
    # Ready enough once the guild is in the cache; on_ready itself comes a
    # guild_ready_timeout (2 s) later, waiting for more guilds that never come.
    deadline = asyncio.get_running_loop().time() + 10
    while client.get_guild(fake.guild_id) is None:
        if task.done() or asyncio.get_running_loop().time() > deadline:
            await client.close()
            raise RuntimeError(f"bot did not connect: {task.exception() if task.done() else 'timeout'}")
        await asyncio.sleep(0.01)
    try:
        yield client
    finally:
        await client.close()
        await asyncio.wait_for(task, 10)


def _count_handled_messages(client: ChimeIn, fake: FakeDiscord) -> None:
    # discord.py looks its handlers up on the instance at dispatch time.
    client.handled_ids = set()
    client.first_dispatch = len(fake.created_ids)
    handle = client.on_message

    async def on_message(message):
        try:
            await handle(message)
        finally:
            client.handled_ids.add(message.id)

    client.on_message = on_message


async def settle(client: ChimeIn, fake: FakeDiscord, timeout: float = 15.0) -> None:
    """Wait until every message sent to this bot was handled and every decision is done,
    including the ones its own posts lead to."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout

    def all_handled() -> bool:
        return set(fake.created_ids[client.first_dispatch:]) <= client.handled_ids

    while True:
        while not all_handled():
            if loop.time() > deadline:
                raise TimeoutError("the bot did not handle every message it was sent")
            await asyncio.sleep(0.01)
        await client.decisions.idle()
        # A post during those decisions was echoed back as a new message: go round again.
        if all_handled() and not client.decisions.busy():
            return
