"""Served models through the front ends: settings -> engine (bot/engines.py), and how failures end.

The chat is driven as ``printf ... | python -m bot chat`` would drive it, with
the decisions from the scripted engine (tests/fakes/engine.py) where only the
replies are under test, and the replies from the OpenAI-compatible test server
with the real embedded model behind it (tests/fakes/model_server.py).
"""

from __future__ import annotations

import io
import socket
import sys

import pytest

import models.loading
from bot.chat import main
from bot.check import check_served
from bot.decisions import COULD_NOT_ANSWER
from bot.engines import build_engine
from bot.settings import SettingsError, load_settings
from models.served import ChatReplies, ServedEngine, SplitEngine, make_client
from models.turns import Turn
from tests.fakes.engine import ScriptedEngine
from tests.fakes.model_server import ModelServer

pytestmark = pytest.mark.usefixtures("clean_environment")

QUESTION = "Ana: hi\nBo: @assistant what is the capital of Australia?\n"


@pytest.fixture(scope="module")
def server(loaded):
    with ModelServer(loaded.model, loaded.tokenizer, "smollm") as running:
        yield running


@pytest.fixture
def gate(monkeypatch):
    """A scripted in-process gate (never speaks on its own) where ``load_engine`` would load the model."""
    engine = ScriptedEngine(speak_probability=0.0, reply_text="from the gate")
    monkeypatch.setattr(models.loading, "load_engine", lambda model, adapter, window_tokens, **options: engine)
    return engine


def down_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1"


def chat(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(QUESTION))
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_chat_prints_the_served_models_reply(monkeypatch, capsys, gate, server):
    monkeypatch.setenv("CHIMEIN_REPLY_URL", server.base_url)
    monkeypatch.setenv("CHIMEIN_REPLY_MODEL", "smollm")
    monkeypatch.setenv("CHIMEIN_REQUEST_TIMEOUT_SECONDS", "300")  # a busy test machine, not a slow server
    code, out, _ = chat(monkeypatch, capsys, "--explain")
    # What the same model says to the same room, asked directly.
    expected = ChatReplies(make_client(server.base_url), "smollm").reply(
        [Turn.user("Ana", "hi"), Turn.user("Bo", "@assistant what is the capital of Australia?")])
    assert code == 0
    assert f"assistant: {expected}" in out.splitlines()
    assert "backend=chat:smollm@" + server.base_url in out
    assert [r["path"] for r in server.requests][-1] == "/v1/chat/completions"


def test_chat_with_the_reply_server_down_prints_the_notice_and_no_traceback(monkeypatch, capsys, gate):
    url = down_url()
    monkeypatch.setenv("CHIMEIN_REPLY_URL", url)
    monkeypatch.setenv("CHIMEIN_REPLY_MODEL", "smollm")
    code, out, err = chat(monkeypatch, capsys)
    assert code == 0
    assert out.splitlines()[-1] == f"assistant: {COULD_NOT_ANSWER}"
    assert "Traceback" not in out + err
    assert url in err and "cannot connect" in err


def test_a_decision_server_that_is_down_is_a_logged_silence(monkeypatch, capsys):
    url = down_url()
    monkeypatch.setenv("CHIMEIN_ENGINE_URL", url)
    monkeypatch.setenv("CHIMEIN_REQUEST_TIMEOUT_SECONDS", "2")
    monkeypatch.setattr(sys, "stdin", io.StringIO("Ana: what's the capital of peru?\n"))
    code = main([])
    captured = capsys.readouterr()
    assert code == 0 and "assistant:" not in captured.out
    assert "reason=model failed" in captured.err and url in captured.err
    assert "Traceback" not in captured.out + captured.err


def test_the_settings_choose_the_engines(monkeypatch, gate):
    assert build_engine(load_settings()) is gate
    served = build_engine(load_settings(engine_url="http://127.0.0.1:9/v1/", engine_model="chimein"))
    assert isinstance(served, ServedEngine)
    info = served.describe()
    assert info["backend"] == "served:chimein@http://127.0.0.1:9/v1/"
    assert info["adapter"].endswith("models/adapter") and 0 < info["speak_threshold"] < 1
    split = build_engine(load_settings(engine_url="http://127.0.0.1:9/v1", reply_url="http://127.0.0.1:8/v1",
                                       reply_model="llama3.1:8b"))
    assert isinstance(split, SplitEngine) and isinstance(split.decisions, ServedEngine)
    assert split.describe()["reply_model"] == "llama3.1:8b"


def test_a_reply_url_needs_a_model_name_and_urls_must_be_http():
    with pytest.raises(SettingsError, match="CHIMEIN_REPLY_MODEL: not set, but CHIMEIN_REPLY_URL is"):
        load_settings(reply_url="http://localhost:11434/v1")
    with pytest.raises(SettingsError, match="CHIMEIN_ENGINE_URL: 'localhost:8000' is not an http"):
        load_settings(engine_url="localhost:8000")


def test_check_contacts_each_server_and_names_a_down_one(server):
    url = down_url()
    results = check_served(load_settings(engine_url=server.base_url, engine_model="smollm",
                                         reply_url=url, reply_model="x", request_timeout_seconds=60))
    assert [r.status for r in results] == ["ok", "problem"]
    assert results[0].text == f"CHIMEIN_ENGINE_URL: {server.base_url}: offers smollm"
    assert results[1].text.startswith(f"CHIMEIN_REPLY_URL: {url}") and "cannot connect" in results[1].text
    assert len(results[1].line().splitlines()) == 1
