"""Splitting at Discord's 2,000-character limit on natural boundaries, and posting
without markers or pings. (Previously, peers crashed on long replies.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bot.sending import DISCORD_MESSAGE_CHARS, NO_PINGS, post, split_for_discord


def test_short_text_is_one_piece():
    assert split_for_discord("  hello  ") == ["hello"]
    assert split_for_discord("x" * DISCORD_MESSAGE_CHARS) == ["x" * DISCORD_MESSAGE_CHARS]
    assert split_for_discord("   ") == []


def test_splits_on_line_breaks_first():
    lines = [f"line {i}: " + "word " * 30 for i in range(40)]
    pieces = split_for_discord("\n".join(lines))
    assert len(pieces) > 1 and all(len(p) <= DISCORD_MESSAGE_CHARS for p in pieces)
    assert all(p.startswith("line ") for p in pieces), "each piece starts at a line"
    assert "\n".join(pieces).split() == "\n".join(lines).split()


def test_splits_on_sentences_when_there_are_no_lines():
    text = " ".join(f"Sentence number {i} is here." for i in range(200))
    pieces = split_for_discord(text)
    assert len(pieces) > 1 and all(len(p) <= DISCORD_MESSAGE_CHARS for p in pieces)
    assert all(p.endswith(".") for p in pieces)
    assert " ".join(pieces) == text


def test_one_huge_word_is_cut_hard():
    pieces = split_for_discord("a" * 4500)
    assert [len(p) for p in pieces] == [2000, 2000, 500]


@pytest.mark.parametrize("limit", [10, 100, 2000])
def test_no_piece_exceeds_the_limit(limit):
    text = ("Mixed text. With sentences!\nAnd lines, and averyveryverylongwordindeed here " * 200).strip()
    pieces = split_for_discord(text, limit)
    assert all(0 < len(p) <= limit for p in pieces)
    assert "".join(pieces).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")


class RecordingChannel:
    def __init__(self):
        self.sent = []

    async def send(self, content, *, reference=None, allowed_mentions=None):
        self.sent.append(SimpleNamespace(content=content, reference=reference,
                                         allowed_mentions=allowed_mentions))
        return SimpleNamespace(id=len(self.sent), content=content)


class AskingMessage:
    def to_reference(self, *, fail_if_not_exists=True):
        assert fail_if_not_exists is False, "a deleted question must not make the answer fail"
        return "reference-to-question"


async def test_post_strips_markers_replies_once_and_pings_nobody():
    channel = RecordingChannel()
    sent = await post(channel, "(response) " + "Long answer. " * 300, reply_to=AskingMessage())
    assert len(sent) == len(channel.sent) >= 2
    assert channel.sent[0].reference == "reference-to-question"
    assert all(s.reference is None for s in channel.sent[1:])
    assert all(s.allowed_mentions is NO_PINGS for s in channel.sent)
    assert not any("(response)" in s.content for s in channel.sent)


async def test_post_of_nothing_sends_nothing():
    channel = RecordingChannel()
    assert await post(channel, "(silence)") == [] and channel.sent == []
