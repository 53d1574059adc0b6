"""The names the bot answers to, and reading a reply to the bot when Discord left out
the parent message. (Mention rewriting on real messages is covered end to end in
test_e2e_conversation.py.)"""

from __future__ import annotations

from types import SimpleNamespace

from bot.discord_turns import names_of_bot
from bot.rules import facts_about
from bot.window import ChannelWindow
from models.turns import Turn

BOT_ID = 42


def test_names_of_bot_include_account_names_nickname_and_aliases():
    me = SimpleNamespace(name="sage", global_name="Sage", display_name="Sage")
    guild = SimpleNamespace(me=SimpleNamespace(display_name="Professor Sage"))
    assert names_of_bot(me, guild, ("sagebot",)) == ("sage", "Sage", "Professor Sage", "sagebot")
    assert names_of_bot(me, None, ()) == ("sage", "Sage")


def _message(reference):
    return SimpleNamespace(guild=None, mentions=[], role_mentions=[], reference=reference,
                           author=SimpleNamespace(id=7, bot=False))


def test_reply_to_the_bot_is_recognised_from_the_window_when_the_parent_is_missing():
    window = ChannelWindow([Turn.assistant("It's Lima.", 100), Turn.user("Maya", "ok", 101)])
    to_bot = _message(SimpleNamespace(message_id=100, resolved=None))
    to_person = _message(SimpleNamespace(message_id=101, resolved=None))
    assert facts_about(to_bot, BOT_ID, window, quiet=False).replies_to_bot
    assert not facts_about(to_person, BOT_ID, window, quiet=False).replies_to_bot
    assert not facts_about(_message(None), BOT_ID, window, quiet=False).replies_to_bot
