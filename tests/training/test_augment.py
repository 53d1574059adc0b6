"""Augmentation changes how people write, never what the moment is."""

import random

import pytest

from training.augment import augment, augment_conversations, rename_mentions
from training.dataset import Conversation

CONVERSATION = Conversation(["Pool opens at 7."], [
    {"role": "user", "name": "Ana", "content": "Bo, did you see the match?", "kind": "named_person"},
    {"role": "user", "name": "Bo", "content": "@assistant what time does the pool open?", "kind": "addressed"},
    {"role": "assistant", "content": "It opens at 7 AM, Bo."},
    {"role": "user", "name": "MusicBot", "content": "Now playing: Song 2", "kind": "other_bot"},
    {"role": "user", "name": "Ana", "content": "my assistant manager said 12 people are coming."},
])


@pytest.mark.parametrize("seed", range(40))
def test_a_rewrite_keeps_the_labels_and_what_they_depend_on(seed):
    notes, messages = augment(CONVERSATION, random.Random(seed))
    original = CONVERSATION.messages
    assert notes == CONVERSATION.notes
    assert [m["role"] for m in messages] == [m["role"] for m in original]
    assert [m.get("kind") for m in messages] == [m.get("kind") for m in original]
    new_bo = messages[1]["name"]
    assert messages[2]["content"] == f"It opens at 7 AM, {new_bo}."  # the reply's facts stay
    assert messages[1]["content"].startswith("@assistant ")
    assert "assistant" in messages[4]["content"] and "12" in messages[4]["content"]
    assert messages[3]["name"] == "MusicBot"  # another bot stays a bot
    # Names are swapped consistently: Bo is still the one named in the first message.
    assert new_bo != "Bo" and new_bo.lower() in messages[0]["content"].lower()
    assert messages[0]["name"] == messages[4]["name"] != "Ana"


def test_rewrites_vary_the_style():
    texts = {augment(CONVERSATION, random.Random(seed)).messages[0]["content"] for seed in range(40)}
    assert len(texts) > 5
    assert any("?" not in text for text in texts) and any(text == text.lower() for text in texts)


def test_share_of_rewritten_conversations():
    conversations = [CONVERSATION] * 200
    assert augment_conversations(conversations, 0.0) == conversations
    changed = sum(c != CONVERSATION for c in augment_conversations(conversations, 0.5, seed=1))
    assert 70 < changed < 130
    with pytest.raises(ValueError):
        augment_conversations(conversations, 1.5)


def test_mentions_are_renamed_as_whole_words_only():
    assert rename_mentions("Bo and Bob, @Bo", {"Bo": "Lena"}) == "Lena and Bob, @Lena"


def test_flip_rate_counts_changed_decisions_on_the_real_model(engine):
    from training.augment import flip_rate

    conversations = [CONVERSATION] * 2
    always = flip_rate(engine, conversations, threshold=0.0)
    assert always == {"points": 8, "flips": 0, "flip_rate": 0.0, "threshold": 0.0}  # p >= 0 always speaks
    result = flip_rate(engine, conversations, threshold=0.5, seed=3)
    assert result["points"] == 8 and 0 <= result["flips"] <= 8
    assert result["flip_rate"] == result["flips"] / 8
