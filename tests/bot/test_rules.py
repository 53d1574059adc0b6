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
