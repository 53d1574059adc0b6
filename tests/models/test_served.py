"""The served engines against an OpenAI-compatible server with the real embedded model behind it.

The server (tests/fakes/model_server.py) speaks the protocol; the ``openai``
client talks to it unchanged. What is checked: a served decision equals the
in-process one for the same window, as the window slides; a greedy served
reply equals the in-process reply; a chat model's request carries the policy's
system message and the room; and every way a server can fail ends in one
``ServedError`` that names the server.
"""

from __future__ import annotations

import socket

import pytest

from models.engine import Engine
from models.policy import REPLY_SYSTEM
from models.served import (
    ChatReplies,
    ServedEngine,
    ServedError,
    SplitEngine,
    check_server,
    clean_chat_text,
    make_client,
)
from models.turns import Turn
from tests.conftest import long_conversation
from tests.fakes.model_server import MALFORMED, ModelServer, Slow

WINDOW_TOKENS = 256  # small, so 60 messages slide the window several times
REPLY_TOKENS = 24


@pytest.fixture(scope="module")
def server(loaded):
    with ModelServer(loaded.model, loaded.tokenizer, "chimein") as running:
        yield running


@pytest.fixture()
def fresh(server):
    server.faults.clear()
    server.requests.clear()
    server.token_ids = True
    return server


def served_engine(server, tokenizer, timeout_seconds: float = 30.0) -> ServedEngine:
    return ServedEngine(make_client(server.base_url, timeout_seconds=timeout_seconds), "chimein", tokenizer,
                        window_tokens=WINDOW_TOKENS, max_reply_tokens=REPLY_TOKENS)


def down_url() -> str:
    """A local URL nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.mark.slow  # about 30 s on an idle 2-core machine: 60 decisions each way
def test_served_decisions_equal_in_process_decisions_as_the_window_slides(fresh, loaded):
    local = Engine(loaded.model, loaded.tokenizer, window_tokens=WINDOW_TOKENS)
    served = served_engine(fresh, loaded.tokenizer)
    conversation = long_conversation(60)
    first_turns, compared, worst = set(), 0, 0.0
    for end in range(1, len(conversation) + 1):
        window = conversation[:end]
        if window[-1].role != "user":
            continue
        p_local = local.decide(window, key="room")
        p_served = served.decide(window, key="room")
        worst = max(worst, abs(p_local - p_served))
        first_turns.add(served._sessions["room"].first_turn)
        compared += 1
    assert compared == 60
    assert len(first_turns) >= 3, "the window never slid: the test would not cover trimming"
    assert worst < 1e-3
    # Branches outside the top log-probabilities were scored exactly, through echo.
    assert any(r["json"].get("echo") for r in fresh.requests)


def test_a_decision_reads_text_tokens_from_a_server_that_does_not_name_ids(fresh, loaded):
    """llama.cpp's server ignores vLLM's return_tokens_as_token_ids and names tokens by their text."""
    fresh.token_ids = False
    window = [Turn.user("Ana", "what's the capital of peru?"), Turn.user("Bo", "no idea")]
    local = Engine(loaded.model, loaded.tokenizer, window_tokens=WINDOW_TOKENS)
    served = served_engine(fresh, loaded.tokenizer)
    assert served.decide(window) == pytest.approx(local.decide(window), abs=1e-3)
    notes = ["Lima is the capital of Peru."]  # rendered the same way too
    assert served.decide(window, notes=notes) == pytest.approx(local.decide(window, notes=notes), abs=1e-3)


def test_greedy_served_replies_equal_in_process_replies(fresh, loaded):
    local = Engine(loaded.model, loaded.tokenizer, window_tokens=WINDOW_TOKENS, max_reply_tokens=REPLY_TOKENS)
    served = served_engine(fresh, loaded.tokenizer)
    conversation = long_conversation(30)
    for end in (7, 19, len(conversation)):
        window = [t for t in conversation[:end]]
        while window[-1].role != "user":
            window.pop()
        assert served.reply(window, key="room") == local.reply(window, key="room")
    request = fresh.requests[-1]["json"]
    assert request["stop"] == ["<|im_end|>"] and request["max_tokens"] == REPLY_TOKENS


def test_a_chat_model_gets_the_policy_and_the_room_and_its_answer_is_cleaned(fresh, loaded):
    replies = ChatReplies(make_client(fresh.base_url), "chimein", max_reply_tokens=REPLY_TOKENS)
    window = [Turn.assistant("old words from before the window"), Turn.user("Ana", "hi"),
              Turn.user("Bo", "@assistant what is the capital of Australia?")]
    text = replies.reply(window)
    sent = fresh.requests[-1]["json"]["messages"]
    assert sent == [{"role": "system", "content": REPLY_SYSTEM},
                    {"role": "user", "content": "Ana: hi\nBo: @assistant what is the capital of Australia?"}]
    assert text and "(response)" not in text
    # Greedy: the same room gives the same words.
    assert replies.reply(window) == text


def test_chat_messages_alternate_and_keep_the_bots_words():
    replies = ChatReplies(make_client("http://127.0.0.1:9/v1"), "m")
    window = [Turn.user("Ana", "a"), Turn.assistant("said (response) this"), Turn.assistant("and this"),
              Turn.user("Bo", "b"), Turn.user("Cy", "c")]
    assert replies.messages(window, notes=["Lima is in Peru."])[0]["content"].endswith("\n- Lima is in Peru.")
    assert [(m["role"], m["content"]) for m in replies.messages(window)[1:]] == [
        ("user", "Ana: a"), ("assistant", "said  this\nand this"), ("user", "Bo: b\nCy: c")]


def test_chat_text_loses_reasoning_markers_and_the_echoed_name():
    assert clean_chat_text("<think>hmm, Canberra?</think>\nassistant: (response) Canberra.") == "Canberra."


def test_a_split_engine_decides_with_one_and_replies_with_the_other(fresh, loaded):
    gate = Engine(loaded.model, loaded.tokenizer, window_tokens=WINDOW_TOKENS, info={"model": "embedded"})
    voice = ChatReplies(make_client(fresh.base_url), "chimein", max_reply_tokens=8)
    split = SplitEngine(gate, voice)
    window = [Turn.user("Ana", "@assistant how far is the moon?")]
    assert split.decide(window) == pytest.approx(gate.decide(window), abs=1e-5)
    assert split.reply(window) == voice.reply(window)
    info = split.describe()
    assert info["model"] == "embedded" and info["reply_model"] == "chimein"
    assert info["backend"] == "in-process" and info["reply_backend"].startswith("chat:chimein@http://127.0.0.1")


@pytest.mark.parametrize("fault, says", [
    ([500, 500], "HTTP 500"),  # the client retries once; both fail
    ([Slow(2.0), Slow(2.0)], "no answer within"),
    ([MALFORMED], "unusable answer"),  # not retried: the server did answer
])
def test_a_failing_server_ends_in_one_error_naming_it(fresh, loaded, fault, says):
    served = served_engine(fresh, loaded.tokenizer, timeout_seconds=0.5)
    window = [Turn.user("Ana", "@assistant what is 2+2?")]
    for call in (served.decide, served.reply):
        fresh.faults.extend(fault)
        with pytest.raises(ServedError, match=says) as raised:
            call(window)
        assert fresh.base_url in str(raised.value)
    fresh.faults.clear()
    # And it recovers at once when the server does (a longer timeout: the machine may be busy).
    assert 0.0 <= served_engine(fresh, loaded.tokenizer).decide(window) <= 1.0


def test_a_down_server_ends_in_one_error_naming_it(loaded):
    url = down_url()
    served = ServedEngine(make_client(url, timeout_seconds=1.0), "chimein", loaded.tokenizer)
    replies = ChatReplies(make_client(url, timeout_seconds=1.0), "chimein")
    window = [Turn.user("Ana", "@assistant hi")]
    for call in (served.decide, served.reply, replies.reply):
        with pytest.raises(ServedError, match="cannot connect") as raised:
            call(window)
        assert url in str(raised.value)


def test_check_server_finds_the_model_or_names_the_url(fresh):
    assert check_server(fresh.base_url, "chimein") == f"{fresh.base_url}: offers chimein"
    with pytest.raises(ServedError, match=r"does not offer model 'other' \(it offers: chimein\)"):
        check_server(fresh.base_url, "other")
    url = down_url()
    with pytest.raises(ServedError, match=url):
        check_server(url, "chimein", timeout_seconds=1.0)


def test_the_api_key_is_sent_as_a_bearer_token(loaded):
    with ModelServer(loaded.model, loaded.tokenizer, "chimein", api_key="secret") as guarded:
        assert check_server(guarded.base_url, "chimein", api_key="secret")
        with pytest.raises(ServedError, match="HTTP 401"):
            check_server(guarded.base_url, "chimein", api_key="wrong")
