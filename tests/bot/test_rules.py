"""The fixed rules before the model (the hard parts of docs/policy.md), one case per line."""

from __future__ import annotations

import pytest

from bot.rules import Action, MessageFacts, rule_for


@pytest.mark.parametrize("facts, action, reason", [
    (MessageFacts(), Action.ASK_MODEL, "model"),
    (MessageFacts(is_own=True, author_is_bot=True), Action.IGNORE, "own message"),
    (MessageFacts(is_own=True, author_is_bot=True, mentions_bot=True), Action.IGNORE, "own message"),
    (MessageFacts(mentions_bot=True), Action.REPLY, "mention"),
    (MessageFacts(replies_to_bot=True), Action.REPLY, "reply to bot"),
    (MessageFacts(is_dm=True), Action.REPLY, "dm"),
    (MessageFacts(author_is_bot=True), Action.SILENT, "other bot"),
    (MessageFacts(author_is_bot=True, replies_to_bot=True), Action.SILENT, "other bot"),
    (MessageFacts(author_is_bot=True, is_dm=True), Action.SILENT, "other bot"),
    (MessageFacts(author_is_bot=True, mentions_bot=True), Action.REPLY, "mention"),
    (MessageFacts(mentions_others=True), Action.SILENT, "mentions others"),
    (MessageFacts(mentions_others=True, mentions_bot=True), Action.REPLY, "mention"),
    (MessageFacts(quiet=True), Action.SILENT, "quiet mode"),
    (MessageFacts(quiet=True, mentions_bot=True), Action.REPLY, "mention"),
    (MessageFacts(quiet=True, replies_to_bot=True), Action.REPLY, "reply to bot"),
])
def test_rule(facts, action, reason):
    ruling = rule_for(facts)
    assert (ruling.action, ruling.reason) == (action, reason)


def test_bot_reply_guard_allows_n_per_span_then_one_silence_per_closing():
    from bot.rules import BotReplyGuard

    guard = BotReplyGuard(limit=2, span_seconds=60)
    assert [guard.allow(1, now=t) for t in (0, 1, 2, 3)] == [True, True, False, False]
    assert guard.first_refusal(1) and not guard.first_refusal(1), "one log line per silence"
    assert guard.allow(2, now=3), "channels are counted apart"
    assert guard.allow(1, now=60.5) and not guard.allow(1, now=60.7), "only the oldest answer left the span"
    assert guard.first_refusal(1), "an answer ended the last silence, so the new one is logged again"
    assert not BotReplyGuard(limit=0, span_seconds=60).allow(1, now=0), "0 = never answer bots"
