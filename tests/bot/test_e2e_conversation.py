"""End to end: the real discord.py client against the fake Discord, with a scripted engine.

The engine is the scripted fake (tests/fakes/engine.py) for speed: these tests
are about what the bot does around the model (rules, folding, posting,
surviving), not the model's judgment. test_e2e_real_model.py runs the same
path with the real embedded model.
"""

from __future__ import annotations

import asyncio
import logging

from bot.decisions import COULD_NOT_ANSWER
from models.turns import MARKERS
from tests.bot.harness import discord_world, running_bot, settle
from tests.fakes.engine import ScriptedEngine


async def test_mention_gets_a_reply_that_references_the_asking_message(tmp_path):
    engine = ScriptedEngine(reply_text="It's Lima.")
    async with discord_world() as fake, running_bot(fake, engine, tmp_path) as bot:
        maya = fake.add_person("Maya")
        asked = await fake.say("general", maya, f"{fake.mention(fake.bot)} capital of peru?",
                               mentions=[fake.bot])
        [post] = await fake.wait_for_posts(1)
        await settle(bot, fake)

    assert post.content == "It's Lima."
    assert post.reference_id == int(asked["id"])
    assert fake.pings(post) == set()
    assert fake.typing, "typing indicator while generating"
    assert engine.decisions == [], "a forced reply is never put to the model's vote"
    [(_, window)] = engine.replies
    assert (window[-1].name, window[-1].text) == ("Maya", "@assistant capital of peru?")
    assert engine.threads == {"chimein-model_0"}, "the model runs on its own thread"
    assert len(fake.posts) == 1, "the bot does not answer its own reply"


async def test_ordinary_chit_chat_asks_the_model_and_posts_nothing(tmp_path, caplog):
    engine = ScriptedEngine(speak_probability=0.2)
    async with discord_world() as fake, running_bot(fake, engine, tmp_path) as bot:
        maya, tom = fake.add_person("Maya"), fake.add_person("Tom")
        with caplog.at_level(logging.INFO, logger="bot"):
            await fake.say("general", maya, "anyone up for pizza tonight?")
            await settle(bot, fake)
            await fake.say("general", tom, "yes! 8pm?")
            await settle(bot, fake)

    assert fake.posts == []
    channel_id = fake.channels["general"]
    assert [[t.text for t in w] for w in engine.decisions_in(channel_id)] == [
        ["anyone up for pizza tonight?"], ["anyone up for pizza tonight?", "yes! 8pm?"]]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("decision")]
    assert len(lines) == 2
    assert all("reason=model" in line and "p=0.200" in line and "spoke=no" in line and "latency=" in line
               for line in lines)


async def test_model_that_says_speak_posts_without_pinging(tmp_path):
    engine = ScriptedEngine(speak_probability=0.9, reply_text="It's 16 ounces.")
    async with discord_world() as fake, running_bot(fake, engine, tmp_path) as bot:
        await fake.say("general", fake.add_person("Maya"), "how many ounces in a pound again?")
        [post] = await fake.wait_for_posts(1)
        await settle(bot, fake)

    assert post.content == "It's 16 ounces."
    assert post.reference_id is None, "only forced replies reply to a message"
    assert len(engine.decisions) == 1 and len(engine.replies) == 1


async def test_never_answers_itself_or_an_unmentioning_bot(tmp_path):
    engine = ScriptedEngine(speak_probability=0.9)
    async with discord_world() as fake, running_bot(fake, engine, tmp_path) as bot:
        other_bot = fake.add_person("Helper", bot=True)
        await fake.say("general", other_bot, "Reminder: standup in 5 minutes! What is 2+2?")
        await settle(bot, fake)
        assert fake.posts == [] and engine.decisions == []

        await fake.say("general", other_bot, f"{fake.mention(fake.bot)} ping", mentions=[fake.bot])
        await fake.wait_for_posts(1)
        await settle(bot, fake)

    assert len(fake.posts) == 1, "its own post came back over the gateway and was not answered"
    assert engine.decisions == []
    channel = bot.windows.get(fake.channels["general"])
    roles = [t.role for t in channel.turns()]
    assert roles == ["user", "user", "assistant"], "other bots are context; its own post is an assistant turn"


async def test_message_mentioning_only_another_person_causes_no_model_call(tmp_path, caplog):
    engine = ScriptedEngine(speak_probability=0.9)
    async with discord_world() as fake, running_bot(fake, engine, tmp_path) as bot:
        maya, tom = fake.add_person("Maya"), fake.add_person("Tom")
        with caplog.at_level(logging.INFO, logger="bot"):
            await fake.say("general", maya, f"{fake.mention(tom)} what's the capital of peru?",
                           mentions=[tom])
            await settle(bot, fake)

    assert engine.decisions == [] and engine.replies == [] and fake.posts == []
    assert any("reason=rule:mentions others spoke=no" in r.getMessage() for r in caplog.records)
    [turn] = bot.windows.get(fake.channels["general"]).turns()
    assert turn.text == "@Tom what's the capital of peru?", "other people's mentions become their names"


async def test_burst_while_model_is_busy_becomes_at_most_two_decisions(tmp_path):
    engine = ScriptedEngine(speak_probability=0.0, decide_seconds=0.6)
    async with discord_world() as fake, running_bot(fake, engine, tmp_path) as bot:
        people = [fake.add_person(n) for n in ("Ana", "Bo", "Cy")]
        for i in range(10):
            await fake.say("general", people[i % 3], f"message {i}")
        await settle(bot, fake)

    decisions = engine.decisions_in(fake.channels["general"])
    assert 1 <= len(decisions) <= 2
    assert decisions[-1][-1].text == "message 9", "the last decision sees the newest state of the room"
    assert len(decisions[-1]) == 10


async def test_forced_replies_queued_while_busy_are_all_answered(tmp_path):
    engine = ScriptedEngine(speak_probability=0.0, decide_seconds=0.4, reply_text="On it.")
    async with discord_world() as fake, running_bot(fake, engine, tmp_path) as bot:
        maya = fake.add_person("Maya")
        await fake.say("general", maya, "hello all")
        asks = [await fake.say("general", maya, f"{fake.mention(fake.bot)} q{i}", mentions=[fake.bot])
                for i in range(3)]
        await fake.wait_for_posts(3)
        await settle(bot, fake)

    assert sorted(p.reference_id for p in fake.posts) == sorted(int(a["id"]) for a in asks)
    assert [w[-1].text for _, w in engine.replies] == ["@assistant q0", "@assistant q1", "@assistant q2"]


async def test_reply_longer_than_discord_limit_arrives_as_several_messages(tmp_path):
    paragraph = "This sentence is part of a long answer about the history of Peru. " * 15
    long_text = "\n\n".join([paragraph.strip()] * 5)  # about 5,000 characters
    engine = ScriptedEngine(reply_text=long_text)
    async with discord_world() as fake, running_bot(fake, engine, tmp_path) as bot:
        asked = await fake.say("general", fake.add_person("Maya"), f"{fake.mention(fake.bot)} tell me all",
                               mentions=[fake.bot])
        await fake.wait_for_posts(3)
        await settle(bot, fake)

    posts = fake.posts
    assert len(posts) >= 3 and all(len(p.content) <= 2000 for p in posts)
    assert posts[0].reference_id == int(asked["id"]) and all(p.reference_id is None for p in posts[1:])
    assert " ".join(p.content for p in posts).split() == long_text.split()
    window = bot.windows.get(fake.channels["general"]).turns()
    assert [t.role for t in window[-len(posts):]] == ["assistant"] * len(posts)


async def test_everyone_in_the_models_text_pings_nobody(tmp_path):
    engine = ScriptedEngine(reply_text="@everyone @here hi <@&123> and <@456> (response) done")
    async with discord_world() as fake, running_bot(fake, engine, tmp_path) as bot:
        await fake.say("general", fake.add_person("Maya"), f"{fake.mention(fake.bot)} say hi",
                       mentions=[fake.bot])
        [post] = await fake.wait_for_posts(1)
        await settle(bot, fake)

    assert "@everyone" in post.content, "shown as text ..."
    assert fake.pings(post) == set(), "... and notifies nobody"
    assert post.payload["allowed_mentions"] == {"parse": []}
    assert not any(marker in post.content for marker in MARKERS)


async def test_heartbeats_stay_on_time_during_a_long_generation(tmp_path):
    engine = ScriptedEngine(reply_seconds=3.0)
    async with discord_world(heartbeat_seconds=0.25) as fake, running_bot(fake, engine, tmp_path) as bot:
        await fake.say("general", fake.add_person("Maya"), f"{fake.mention(fake.bot)} think hard",
                       mentions=[fake.bot])
        await asyncio.sleep(0.3)
        start = len(fake.heartbeats)
        await fake.wait_for_posts(1, timeout=10)
        during = fake.heartbeats[start:]
        await settle(bot, fake)

    assert len(during) >= 8, "about one heartbeat per 0.25 s over a 3 s generation"
    gaps = [b - a for a, b in zip(during, during[1:], strict=False)]
    assert max(gaps) < 0.75, f"heartbeat gaps {gaps}"
    assert len(fake.identifies) == 1, "the gateway connection never dropped"


async def test_model_exception_leaves_the_bot_running(tmp_path, caplog):
    engine = ScriptedEngine(decide_error=RuntimeError("CUDA out of memory"),
                            reply_error=RuntimeError("CUDA out of memory"))
    async with discord_world() as fake, running_bot(fake, engine, tmp_path) as bot:
        maya = fake.add_person("Maya")
        with caplog.at_level(logging.INFO, logger="bot"):
            await fake.say("general", maya, "what's the tallest mountain?")
            await settle(bot, fake)
            assert fake.posts == [], "a failed decision stays silent"

            asked = await fake.say("general", maya, f"{fake.mention(fake.bot)} tallest mountain?",
                                   mentions=[fake.bot])
            [notice] = await fake.wait_for_posts(1)
            assert notice.content == COULD_NOT_ANSWER and notice.reference_id == int(asked["id"])

            engine.reply_error = None
            await fake.say("general", maya, f"{fake.mention(fake.bot)} try again?", mentions=[fake.bot])
            await fake.wait_for_posts(2)
            await settle(bot, fake)

    assert fake.posts[1].content == "Lima is the capital of Peru."
    # Each failure is logged with the engine's own exception, where the self-hoster looks for it
    # (previously any record with any exception attached passed).
    failures = [(r.getMessage(), r.exc_info[1]) for r in caplog.records if r.exc_info]
    for logged_as in ("reason=model failed; staying silent", "reply generation failed"):
        errors = [error for message, error in failures if logged_as in message]
        assert errors, f"{logged_as!r} is logged with the exception"
        assert all(isinstance(e, RuntimeError) and str(e) == "CUDA out of memory" for e in errors)
    assert "Traceback" not in " ".join(p.content for p in fake.posts)


async def test_dm_and_reply_to_the_bot_force_a_reply(tmp_path):
    engine = ScriptedEngine(speak_probability=0.0, reply_text="Sure.")
    async with discord_world() as fake, running_bot(fake, engine, tmp_path) as bot:
        maya = fake.add_person("Maya")
        await fake.say(fake.dm_channel(maya), maya, "what's 2+2")
        [dm_reply] = await fake.wait_for_posts(1)
        assert dm_reply.channel_id == fake.dm_channel(maya)

        first = await fake.say("general", maya, f"{fake.mention(fake.bot)} hi", mentions=[fake.bot])
        await fake.wait_for_posts(2)
        bots_message = next(m for m in fake.messages[fake.channels["general"]]
                            if m["author"]["id"] == fake.bot["id"])
        follow_up = await fake.say("general", maya, "and what about tomorrow?", reply_to=bots_message)
        await fake.wait_for_posts(3)
        await settle(bot, fake)

    assert fake.posts[1].reference_id == int(first["id"])
    assert fake.posts[2].reference_id == int(follow_up["id"])
    assert engine.decisions == [], "none of these was put to the model's vote"


async def test_edits_and_deletions_keep_the_window_true(tmp_path):
    engine = ScriptedEngine(speak_probability=0.0)
    async with discord_world() as fake, running_bot(fake, engine, tmp_path) as bot:
        maya, tom = fake.add_person("Maya"), fake.add_person("Tom")
        typo = await fake.say("general", maya, "whats the captial of peru")
        oops = await fake.say("general", tom, "wrong channel sorry")
        await settle(bot, fake)
        await fake.edit(typo, "what's the capital of peru?")
        await fake.delete(oops)
        await fake.say("general", tom, "no idea")
        await settle(bot, fake)

    last = engine.decisions[-1][1]
    assert [(t.name, t.text) for t in last] == [("Maya", "what's the capital of peru?"), ("Tom", "no idea")]


async def test_bot_names_and_mentions_are_rewritten_for_the_model(tmp_path):
    engine = ScriptedEngine(speak_probability=0.0)
    async with discord_world() as fake, running_bot(fake, engine, tmp_path, bot_names="sagebot") as bot:
        maya, tom = fake.add_person("Maya"), fake.add_person("Tom")
        await fake.say("general", maya, "does Sage know? or sagebot? ask the sausage")
        await fake.say("general", tom, f"{fake.mention(fake.bot)} and {fake.mention(maya)} hi",
                       mentions=[fake.bot, maya])
        await fake.wait_for_posts(1)
        await settle(bot, fake)

    texts = [t.text for t in bot.windows.get(fake.channels["general"]).turns() if t.role == "user"]
    assert texts == ["does assistant know? or assistant? ask the sausage", "@assistant and @Maya hi"]


async def test_only_configured_channels_are_read(tmp_path):
    engine = ScriptedEngine(speak_probability=0.9)
    async with discord_world() as fake:
        async with running_bot(fake, engine, tmp_path, channels=str(fake.channels["general"])) as bot:
            maya = fake.add_person("Maya")
            await fake.say("random", maya, f"{fake.mention(fake.bot)} hello?", mentions=[fake.bot])
            await settle(bot, fake)
            assert fake.posts == [] and bot.windows.get(fake.channels["random"]) is None
            await fake.say("general", maya, "hello?")
            await fake.wait_for_posts(1)
            await settle(bot, fake)


async def test_identify_asks_only_for_the_intents_it_needs(tmp_path):
    async with discord_world() as fake, running_bot(fake, ScriptedEngine(), tmp_path):
        pass
    guilds, guild_messages, dm_messages, message_content = 1 << 0, 1 << 9, 1 << 12, 1 << 15
    assert fake.identifies[0]["intents"] == guilds | guild_messages | dm_messages | message_content
    assert fake.unknown == [], "every REST call the client made is one the fake knows"
