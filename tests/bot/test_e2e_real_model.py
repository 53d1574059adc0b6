"""End to end with the real embedded model and the shipped adapter: Discord gateway
event -> window -> real decide/reply on the model thread -> post, through the real
discord.py client and the fake Discord.

The bot runs as shipped: no chattiness is set, so the threshold is the one the
adapter was tuned on (models/adapter/chimein.json), and the test asserts the
decisions themselves: chit-chat among friends is judged silent (the speak
probability stays under that threshold), and an @mention gets a real answer,
not the "could not answer" notice.

Previously this ran the bare base model at chattiness 0, where the bot can never
speak on its own: its silence check could not fail, and its reply check passed
on the notice too.
"""

from __future__ import annotations

import logging
import re

import pytest

from bot.decisions import COULD_NOT_ANSWER
from models.threshold import adapter_threshold
from models.turns import MARKERS
from tests.bot.harness import discord_world, running_bot, settle

pytestmark = pytest.mark.slow

DECISION = re.compile(r"reason=model spoke=(yes|no) p=([\d.]+) threshold=([\d.]+)")


async def test_real_model_stays_out_of_chit_chat_and_answers_a_mention(shipped_engine, tmp_path, caplog):
    shipped_threshold = adapter_threshold(shipped_engine.describe()["adapter"])
    async with discord_world() as fake, running_bot(fake, shipped_engine, tmp_path) as bot:
        maya, tom = fake.add_person("Maya"), fake.add_person("Tom")
        with caplog.at_level(logging.INFO, logger="bot"):
            await fake.say("general", maya, "anyone up for pizza tonight?")
            await settle(bot, fake)
            await fake.say("general", tom, "yes! 8pm at mine, bring drinks")
            await settle(bot, fake)
            asked = await fake.say("general", maya, f"{fake.mention(fake.bot)} what's the capital of Peru?",
                                   mentions=[fake.bot])
            [post] = await fake.wait_for_posts(1, timeout=120)
            await settle(bot, fake)
            gap = fake.longest_heartbeat_gap()

    lines = [r.getMessage() for r in caplog.records]
    decisions = [DECISION.search(line) for line in lines if "reason=model" in line]
    assert len(decisions) == 2, "each chit-chat message went to the real model"
    for decision in decisions:
        spoke, probability, threshold = decision[1], float(decision[2]), float(decision[3])
        assert threshold == pytest.approx(shipped_threshold), "the adapter's own threshold, not a test's"
        assert probability < threshold and spoke == "no", decision[0]

    assert post.reference_id == int(asked["id"])
    assert post.content != COULD_NOT_ANSWER, "the model answered, not the fallback notice"
    assert len(post.content) <= 2000 and not any(marker in post.content for marker in MARKERS)
    assert fake.pings(post) == set()
    assert any("reason=forced:mention spoke=yes" in line and "no answer" not in line for line in lines)
    # Seconds of real forward passes on the model thread did not hold up the gateway.
    assert gap < 3 * fake.heartbeat_seconds and len(fake.identifies) == 1
