"""End to end: who may talk to the bot, the loop guard, a refused reply form, and a
slash-command sync that goes wrong, with the real discord.py client against the
fake Discord and the scripted engine (the model is not under test here)."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from tests.bot.harness import discord_world, running_bot, settle
from tests.fakes.engine import ScriptedEngine


async def test_forced_reply_without_read_message_history_is_a_plain_message_naming_the_asker(tmp_path, caplog):
    """Previously every forced reply was sent as a Discord reply, which Discord refuses
    without Read Message History (403, code 160002): each @mention went unanswered."""
    engine = ScriptedEngine(reply_text="It's Lima.")
    async with discord_world(read_message_history=False) as fake, running_bot(fake, engine, tmp_path) as bot:
        maya = fake.add_person("Maya")
        with caplog.at_level(logging.WARNING):
            for question in ("capital of peru?", "and of chile?"):
                await fake.say("general", maya, f"{fake.mention(fake.bot)} {question}", mentions=[fake.bot])
                await fake.wait_for_posts(len(fake.posts) + 1)
                await settle(bot, fake)

    assert len(fake.refused) == 2, "the reply form was tried and refused each time"
    assert [p.content for p in fake.posts] == [f"<@{maya['id']}> It's Lima."] * 2
    assert all(p.reference_id is None for p in fake.posts)
    assert all(fake.pings(p) == set() for p in fake.posts), "naming the asker pings nobody"
    warnings = [r.getMessage() for r in caplog.records if "Read Message History" in r.getMessage()]
    assert len(warnings) == 2, warnings  # once from the channel's permissions, once for the refused reply
    assert any("#general" in w and "no Read Message History" in w for w in warnings)


async def test_with_read_message_history_answers_are_replies_and_nothing_is_refused(tmp_path, caplog):
    engine = ScriptedEngine(reply_text="It's Lima.")
    async with discord_world() as fake, running_bot(fake, engine, tmp_path) as bot:
        with caplog.at_level(logging.WARNING):
            asked = await fake.say("general", fake.add_person("Maya"), f"{fake.mention(fake.bot)} capital of peru?",
                                   mentions=[fake.bot])
            await fake.wait_for_posts(1)
            await settle(bot, fake)
    assert fake.posts[0].reference_id == int(asked["id"]) and not fake.refused
    assert "Read Message History" not in caplog.text


async def test_another_bot_that_mentions_it_after_every_post_gets_at_most_n_answers(tmp_path, caplog):
    """Previously another bot that @mentioned this one after each of its posts was answered
    every time (6 of 6); two such bots would talk forever."""
    engine = ScriptedEngine(reply_text="Pong.")
    async with discord_world() as fake, running_bot(fake, engine, tmp_path, bot_replies=2) as bot:
        echo_bot = fake.add_person("EchoBot", bot=True)
        with caplog.at_level(logging.INFO):
            for _ in range(6):
                await fake.say("general", echo_bot, f"{fake.mention(fake.bot)} ping", mentions=[fake.bot])
                await settle(bot, fake)
            maya = fake.add_person("Maya")
            await fake.say("general", maya, f"{fake.mention(fake.bot)} still there?", mentions=[fake.bot])
            await fake.wait_for_posts(3)
            await settle(bot, fake)

    assert len(fake.posts) == 3, "two answers to the bot, then silence; people are still answered"
    guard_lines = [r for r in caplog.records if r.getMessage().startswith("loop guard")]
    assert len(guard_lines) == 1, "one log line when the guard closes"
    assert "reason=rule:loop guard" in caplog.text


async def test_ignored_channels_blocked_users_and_dms_off_are_never_read(tmp_path):
    engine = ScriptedEngine(speak_probability=0.9, reply_text="Hi.")
    async with discord_world() as fake:
        troll, maya = fake.add_person("Troll"), fake.add_person("Maya")
        settings = {"ignored_channels": {fake.channels["random"]}, "blocked_users": {int(troll["id"])},
                    "dms": False}
        async with running_bot(fake, engine, tmp_path, **settings) as bot:
            await fake.say("random", maya, f"{fake.mention(fake.bot)} hello?", mentions=[fake.bot])
            await fake.say("general", troll, f"{fake.mention(fake.bot)} answer me", mentions=[fake.bot])
            await fake.say(fake.dm_channel(maya), maya, "psst, a question")
            await settle(bot, fake)
            assert fake.posts == [] and engine.decisions == [] and engine.replies == []
            assert bot.windows.get(fake.channels["random"]) is None, "an ignored channel is not even read"

            await fake.say("general", maya, f"{fake.mention(fake.bot)} hello?", mentions=[fake.bot])
            await fake.wait_for_posts(1)
            await settle(bot, fake)
            window = bot.windows.get(fake.channels["general"])
            assert [t.name for t in window.turns() if t.role == "user"] == ["Maya"], "the blocked user is not read"


def test_members_of_blocked_roles_are_ignored(tmp_path):
    from bot.client import ChimeIn
    from bot.settings import Settings

    settings = Settings(_env_file=None, DISCORD_TOKEN="a.b.c", blocked_roles={42}, blocked_users={7})
    client = SimpleNamespace(settings=settings)

    def is_blocked(author_id, role_ids=()):
        author = SimpleNamespace(id=author_id, roles=[SimpleNamespace(id=r) for r in role_ids])
        return ChimeIn.is_blocked(client, author)

    assert is_blocked(1, [42]) and is_blocked(7) and not is_blocked(1, [41])
    assert not is_blocked(1), "a user in a DM has no roles"


async def test_start_up_survives_whatever_the_command_sync_returns(tmp_path, caplog):
    """Previously setup_hook caught only HTTPException from the sync: an answer that could
    not be parsed ended start-up."""
    engine = ScriptedEngine(reply_text="Still here.")
    async with discord_world() as fake:
        fake.commands_answer = (200, {"unexpected": "shape"})
        with caplog.at_level(logging.ERROR):
            async with running_bot(fake, engine, tmp_path) as bot:
                await fake.say("general", fake.add_person("Maya"), f"{fake.mention(fake.bot)} hi",
                               mentions=[fake.bot])
                await fake.wait_for_posts(1)
                await settle(bot, fake)
    assert fake.posts[0].content == "Still here."
    assert "could not sync slash commands" in caplog.text
