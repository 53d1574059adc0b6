"""End to end across restarts: the window comes back from Discord's history, and the
slash-command settings come back from the channel settings file.

The engine is the scripted fake (tests/fakes/engine.py): these tests are about
what the bot remembers, not the model's judgment.
"""

from __future__ import annotations

import asyncio
import json

from bot.channel_settings import FILE_NAME, ChannelControls
from models.turns import SILENCE, to_chat_messages
from tests.bot.harness import discord_world, running_bot, settle
from tests.fakes.discord_server import MANAGE_CHANNELS
from tests.fakes.engine import ScriptedEngine


async def test_restart_rebuilds_the_window_from_history_with_its_silences(tmp_path):
    async with discord_world() as fake:
        general = fake.channels["general"]
        maya, tom = fake.add_person("Maya"), fake.add_person("Tom")
        async with running_bot(fake, ScriptedEngine(speak_probability=0.0, reply_text="It's Lima."),
                               tmp_path) as bot:
            await fake.say("general", maya, "anyone know the capital of peru?")
            await fake.say("general", tom, f"{fake.mention(fake.bot)} capital of peru?", mentions=[fake.bot])
            await fake.wait_for_posts(1)
            await settle(bot, fake)
            before_restart = bot.windows.get(general).turns()
        await fake.say_offline("general", maya, "thanks! brb")  # said while the bot was down

        engine = ScriptedEngine(speak_probability=0.0)
        async with running_bot(fake, engine, tmp_path) as bot:
            await fake.say("general", tom, "ok back to planning")
            await settle(bot, fake)

    [window] = engine.decisions_in(general)
    assert [(t.role, t.name, t.text) for t in window] == [
        ("user", "Maya", "anyone know the capital of peru?"),
        ("user", "Tom", "@assistant capital of peru?"),
        ("assistant", "assistant", "It's Lima."),
        ("user", "Maya", "thanks! brb"),
        ("user", "Tom", "ok back to planning"),
    ]
    assert window[:3] == before_restart, "the same turns, ids included, as before the restart"
    rendered = to_chat_messages(window)
    assert rendered[1] == {"role": "assistant", "content": SILENCE}, "no bot message after it: a silence"
    assert len(fake.posts) == 1, "old mentions are not answered again after a restart"


async def test_slash_commands_are_synced_for_channel_managers(tmp_path):
    async with discord_world() as fake, running_bot(fake, ScriptedEngine(), tmp_path):
        pass
    commands = {c["name"]: c for c in fake.commands["global"]}
    assert set(commands) == {"chattiness", "quiet", "status", "forget"}
    assert all(c["default_member_permissions"] == str(MANAGE_CHANNELS) for c in commands.values())
    assert all(c["contexts"] == [0] for c in commands.values()), "server channels only"


async def test_quiet_mode_and_chattiness_survive_a_restart(tmp_path):
    engine = ScriptedEngine(speak_probability=0.3, reply_text="Sure.")
    async with discord_world() as fake:
        maya = fake.add_person("Maya")
        async with running_bot(fake, engine, tmp_path):
            answer = await fake.command("general", fake.owner, "quiet", {"on": True})
            assert answer["data"]["flags"] == 64 and "Quiet mode on" in answer["data"]["content"]
            answer = await fake.command("random", fake.owner, "chattiness", {"level": 1.0})
            assert "1.00" in answer["data"]["content"]

        async with running_bot(fake, engine, tmp_path) as bot:
            await fake.say("general", maya, "what's the capital of peru?")
            await settle(bot, fake)
            assert engine.decisions_in(fake.channels["general"]) == [], "quiet: no model call"
            assert fake.posts == []

            await fake.say("general", maya, f"{fake.mention(fake.bot)} capital of peru?", mentions=[fake.bot])
            await fake.wait_for_posts(1)
            await fake.say("random", maya, "what's the capital of peru?")
            await fake.wait_for_posts(2)
            await settle(bot, fake)

    assert fake.posts[0].channel_id == fake.channels["general"], "quiet mode still answers mentions"
    assert fake.posts[1].channel_id == fake.channels["random"], "p=0.3 beats threshold 0 at chattiness 1"
    saved = json.loads((tmp_path / FILE_NAME).read_text())
    assert saved[str(fake.channels["general"])]["quiet"] is True
    assert saved[str(fake.channels["random"])]["chattiness"] == 1.0
    assert not list(tmp_path.glob("*.tmp")), "written through a temporary file that was renamed"


async def test_a_setting_that_cannot_be_saved_is_refused_with_a_message(tmp_path, monkeypatch):
    """Previously the change applied in memory before the write failed: the command errored
    out (Discord showed "the application did not respond") and the next restart undid it."""
    from bot import files

    def disk_full(*args):
        raise OSError("No space left on device")

    engine = ScriptedEngine(speak_probability=0.3)
    async with discord_world() as fake, running_bot(fake, engine, tmp_path) as bot:
        monkeypatch.setattr(files.os, "replace", disk_full)
        for name, options in (("quiet", {"on": True}), ("chattiness", {"level": 1.0}), ("forget", None)):
            answer = await fake.command("general", fake.owner, name, options)
            assert "could not save" in answer["data"]["content"] and answer["data"]["flags"] == 64, name
        assert bot.controls.get(fake.channels["general"]) == ChannelControls(), "nothing changed in memory"
    assert not (tmp_path / FILE_NAME).exists()


async def test_status_reports_model_chattiness_and_latency(tmp_path):
    engine = ScriptedEngine(speak_probability=0.0)
    async with discord_world() as fake, running_bot(fake, engine, tmp_path) as bot:
        await fake.say("general", fake.add_person("Maya"), "hi all")
        await settle(bot, fake)
        answer = await fake.command("general", fake.owner, "status")

    text = answer["data"]["content"]
    assert answer["data"]["flags"] == 64
    assert "Model: scripted" in text and "Adapter: none" in text
    assert "Chattiness: 0.35 (default)" in text and "Quiet mode: off" in text
    assert "Recent decision latency:" in text and " ms (median of the last 1)" in text


async def test_forget_drops_the_window_and_it_stays_forgotten_after_a_restart(tmp_path):
    async with discord_world() as fake:
        general = fake.channels["general"]
        maya, tom = fake.add_person("Maya"), fake.add_person("Tom")
        engine = ScriptedEngine(speak_probability=0.0)
        async with running_bot(fake, engine, tmp_path) as bot:
            await fake.say("general", maya, "my secret plan")
            await settle(bot, fake)
            answer = await fake.command("general", fake.owner, "forget")
            assert "Forgotten" in answer["data"]["content"]
            await fake.say("general", tom, "fresh start")
            await settle(bot, fake)
            assert engine.forgotten == [general]
            assert [t.text for t in engine.decisions_in(general)[-1]] == ["fresh start"]

        engine = ScriptedEngine(speak_probability=0.0)
        async with running_bot(fake, engine, tmp_path) as bot:
            await fake.say("general", maya, "so anyway")
            await settle(bot, fake)

    assert [t.text for t in engine.decisions_in(general)[-1]] == ["fresh start", "so anyway"]


async def test_commands_answer_at_once_while_the_model_is_busy(tmp_path):
    """Discord drops an interaction not answered within 3 s; a generation can take longer."""
    engine = ScriptedEngine(reply_seconds=3.0)
    async with discord_world() as fake, running_bot(fake, engine, tmp_path) as bot:
        await fake.say("general", fake.add_person("Maya"), f"{fake.mention(fake.bot)} essay please",
                       mentions=[fake.bot])
        await asyncio.sleep(0.3)
        for name, options in (("forget", None), ("status", None), ("quiet", {"on": False})):
            answer = await fake.command("general", fake.owner, name, options, timeout=1.5)
            assert answer["type"] == 4
        await fake.wait_for_posts(1)
        await settle(bot, fake)
    assert engine.forgotten == [fake.channels["general"]], "the cache is dropped once the model is free"


async def test_status_file_says_connected_while_running_and_not_after(tmp_path):
    """The container health check (`python -m bot check --connected`) reads this file."""
    from bot.status import read_status

    async with discord_world() as fake:
        async with running_bot(fake, ScriptedEngine(), tmp_path) as client:
            deadline = asyncio.get_running_loop().time() + 10
            while not client.is_ready() and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            client._write_status()
            assert read_status(tmp_path)["connected"] is True
        client._write_status()
        assert read_status(tmp_path)["connected"] is False
