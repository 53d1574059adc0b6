"""``python -m bot`` (bot.discord_app.main): the failures a self-hoster meets first
end with one clear line and a non-zero exit, never a traceback.

The Discord side is the fake Discord, run on its own thread because ``main``
runs the client on an event loop of its own; the engine is the scripted fake
(the model is not under test here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

import pytest

from bot.discord_app import main
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.engine import ScriptedEngine

TOKEN = "MTIz.fake.token"


@pytest.fixture(autouse=True)
def environment(clean_environment, monkeypatch):
    monkeypatch.setenv("CHIMEIN_STATE_DIR", str(clean_environment / "state"))


@pytest.fixture
def scripted_engine(monkeypatch):
    import models.loading

    loads = []

    def load_engine(model, adapter, window_tokens, **_):
        loads.append((model, adapter, window_tokens))
        return ScriptedEngine()

    monkeypatch.setattr(models.loading, "load_engine", load_engine)
    return loads


@contextlib.contextmanager
def fake_discord_on_a_thread(**options):
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def started():
        fake = FakeDiscord(**options)
        await fake.start()
        return fake

    fake = asyncio.run_coroutine_threadsafe(started(), loop).result(10)
    try:
        with fake.pointed_at():
            yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def test_help_needs_no_configuration(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    assert "DISCORD_TOKEN" in capsys.readouterr().out


def test_missing_token_exits_with_the_reason(capsys, scripted_engine):
    assert main([]) == 2
    assert "DISCORD_TOKEN: not set" in capsys.readouterr().err
    assert scripted_engine == [], "no model is loaded for a bot that cannot start"


def test_model_that_cannot_load_exits_with_the_reason(monkeypatch, caplog):
    import models.loading

    def load_engine(*args, **kwargs):
        raise models.loading.ModelLoadError("model folder ./nope does not exist or has no config.json")

    monkeypatch.setattr(models.loading, "load_engine", load_engine)
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    with caplog.at_level(logging.ERROR):
        assert main([]) == 1
    assert "./nope does not exist" in caplog.text


def test_refused_token_exits_with_the_reason(monkeypatch, caplog, scripted_engine):
    monkeypatch.setenv("DISCORD_TOKEN", "MTIz.wrong.token")
    monkeypatch.setenv("CHIMEIN_MODEL", "some/model")
    with fake_discord_on_a_thread(token=TOKEN), caplog.at_level(logging.ERROR):
        assert main([]) == 1
    assert "Discord refused the token" in caplog.text
    assert scripted_engine == [("some/model", "auto", 1024)]


def test_message_content_intent_switched_off_exits_with_the_fix(monkeypatch, caplog, scripted_engine):
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    with fake_discord_on_a_thread(token=TOKEN, message_content_enabled=False) as fake, \
            caplog.at_level(logging.ERROR):
        assert main([]) == 1
    assert "Privileged Gateway Intents" in caplog.text
    assert fake.commands["global"], "slash commands were synced in setup_hook before connecting"


def test_malformed_token_fails_before_the_model_loads(monkeypatch, capsys, scripted_engine):
    """Previously a token of the wrong shape (a client secret, say) loaded the model first."""
    monkeypatch.setenv("DISCORD_TOKEN", "a-client-secret-without-dots")
    assert main([]) == 2
    assert "DISCORD_TOKEN: does not look like a bot token" in capsys.readouterr().err
    assert scripted_engine == [], "no model is loaded for a token that cannot work"


def test_unreachable_discord_is_one_clear_line(monkeypatch, caplog, capsys, scripted_engine):
    """Previously a failed connection ended in an 80-line traceback."""
    import socket

    import discord

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setattr(discord.http.Route, "BASE", f"http://127.0.0.1:{port}/api/v10")
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)
    with caplog.at_level(logging.ERROR):
        assert main([]) == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].getMessage().startswith("cannot reach Discord: ")
    assert errors[0].exc_info is None and "Traceback" not in capsys.readouterr().err
