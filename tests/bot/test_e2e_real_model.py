"""End to end with the real embedded model: Discord gateway event -> window ->
real decide/reply on the model thread -> post, through the real discord.py client
and the fake Discord.

Chattiness is 0 here, so the bot never speaks on its own whatever the bare base
model's probabilities are; the decisions still run on the real model (and are
logged), and the mention is answered by real generation (or, when the bare base
model produces nothing usable, by the short "could not answer" notice: either
way a reply to the asking message).
"""

from __future__ import annotations

import logging
import re

import pytest

from models.turns import MARKERS
from tests.bot.harness import discord_world, running_bot, settle

pytestmark = pytest.mark.slow


async def test_real_model_judges_chit_chat_and_answers_a_mention(engine, tmp_path, caplog):
    async with discord_world() as fake, running_bot(fake, engine, tmp_path, chattiness=0.0) as bot:
        maya, tom = fake.add_person("Maya"), fake.add_person("Tom")
        with caplog.at_level(logging.INFO, logger="bot"):
            await fake.say("general", maya, "anyone up for pizza tonight?")
            await fake.say("general", tom, "yes! 8pm at mine")
            await settle(bot, fake)
            asked = await fake.say("general", maya, f"{fake.mention(fake.bot)} what's the capital of Peru?",
                                   mentions=[fake.bot])
            [post] = await fake.wait_for_posts(1, timeout=120)
            await settle(bot, fake)
            gap = fake.longest_heartbeat_gap()

    assert post.reference_id == int(asked["id"])
    assert post.content.strip() and len(post.content) <= 2000
    assert not any(marker in post.content for marker in MARKERS)
    assert fake.pings(post) == set()
    decisions = [r.getMessage() for r in caplog.records if "reason=model" in r.getMessage()]
    assert decisions, "the chit-chat went to the real model"
    for line in decisions:
        probability = float(re.search(r"p=([\d.]+)", line)[1])
        assert 0.0 <= probability <= 1.0 and "spoke=no" in line
    assert any("reason=forced:mention spoke=yes" in r.getMessage() for r in caplog.records)
    # Seconds of real forward passes on the model thread did not hold up the gateway.
    assert gap < 3 * fake.heartbeat_seconds and len(fake.identifies) == 1
