"""Data generation against a fake OpenAI-compatible endpoint on 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import random
import re
import socket

import pytest

from tests.fakes.openai_server import FakeOpenAIServer, conversation_json, fenced
from training import generate as gen
from training.dataset import load_conversations
from training.generate import Endpoint, endpoint_from
from training.prompts import (
    NAMES,
    SILENT_CASES,
    TOPICS,
    build_prompt,
    draw_spec,
    extract_json_array,
    parse_answer,
)

KEY = "sk-test"
MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"


@pytest.fixture(autouse=True)
def local_and_quick(monkeypatch):
    monkeypatch.setattr(gen, "RETRY_PAUSE_SECONDS", 0.0)
    # urllib honours proxy variables; a CI proxy must not see requests meant for 127.0.0.1.
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(name, raising=False)


def run(server, out, count, **kwargs):
    endpoint = Endpoint(server.base_url, MODEL, KEY, timeout_seconds=10)
    return gen.generate(out, count, endpoint, progress=False, **kwargs)


def test_writes_count_valid_conversations_with_openai_requests(tmp_path):
    out = tmp_path / "gen.jsonl"
    with FakeOpenAIServer(api_key=KEY) as server:
        result = run(server, out, 5, concurrency=2, seed=7)

    assert (result.existing, result.written, result.failed) == (0, 5, 0)
    assert [c.messages for c in load_conversations(out)] == [json.loads(conversation_json())] * 5
    assert len(server.requests) == 5
    for request in server.requests:
        assert request["path"] == "/v1/chat/completions"
        assert request["headers"]["Authorization"] == f"Bearer {KEY}"
        assert request["json"]["model"] == MODEL
        # One user message, no system role: Mixtral-Instruct's template rejects it.
        assert [m["role"] for m in request["json"]["messages"]] == ["user"]


def test_garbage_answer_is_retried_then_succeeds(tmp_path):
    out = tmp_path / "gen.jsonl"
    with FakeOpenAIServer(["I cannot do that.", fenced(conversation_json(["Lee", "Kim"]))],
                          api_key=KEY) as server:
        result = run(server, out, 1, max_retries=3)

    assert (result.written, result.failed) == (1, 0)
    assert len(server.requests) == 2
    assert server.prompts()[0] == server.prompts()[1]  # the same request, asked again
    assert load_conversations(out)[0].messages[0]["name"] == "Lee"


def test_invalid_answers_are_skipped_after_max_retries(tmp_path, capsys):
    out = tmp_path / "gen.jsonl"
    starts_with_bot = json.dumps([{"role": "assistant", "content": "Hi all!"},
                                  {"role": "user", "name": "Ana", "content": "hi"}])
    with FakeOpenAIServer(api_key=KEY, default=starts_with_bot) as server:
        result = run(server, out, 1, max_retries=2)

    assert (result.written, result.failed) == (0, 1)
    assert len(server.requests) == 3  # the first attempt and two retries
    assert out.read_text() == ""
    err = capsys.readouterr().err
    assert "skipped after 3 attempts" in err and "starts with an assistant message" in err


def test_server_errors_are_retried(tmp_path):
    out = tmp_path / "gen.jsonl"
    with FakeOpenAIServer([503, 429], api_key=KEY) as server:
        result = run(server, out, 1, max_retries=3)
    assert (result.written, result.failed) == (1, 0)
    assert len(server.requests) == 3


def test_resume_only_generates_the_remainder(tmp_path, capsys):
    out = tmp_path / "gen.jsonl"
    done = conversation_json(["Old", "Timer"])
    # Two finished lines and the half-written line a killed run leaves behind.
    out.write_text(f"{done}\n{done}\n" + done[:40])
    with FakeOpenAIServer(api_key=KEY) as server:
        result = run(server, out, 5, concurrency=3)

    assert (result.existing, result.written, result.failed) == (2, 3, 0)
    assert len(server.requests) == 3
    conversations = load_conversations(out)
    assert len(conversations) == 5
    assert [c.messages[0]["name"] for c in conversations[:2]] == ["Old", "Old"]
    assert f"{out}:3: removed an unfinished line" in capsys.readouterr().err

    with FakeOpenAIServer(api_key=KEY) as server:
        result = run(server, out, 5)
    assert (result.existing, result.written) == (5, 0) and server.requests == []


def test_resume_keeps_a_valid_last_line_without_newline(tmp_path):
    out = tmp_path / "gen.jsonl"
    out.write_text(conversation_json())  # valid, but no newline at the end
    with FakeOpenAIServer(api_key=KEY) as server:
        result = run(server, out, 2)
    assert (result.existing, result.written) == (1, 1)
    assert len(load_conversations(out)) == 2


def test_concurrency_is_bounded(tmp_path):
    out = tmp_path / "gen.jsonl"
    with FakeOpenAIServer(api_key=KEY, delay_seconds=0.1) as server:
        result = run(server, out, 9, concurrency=3)
    assert result.written == 9
    assert 1 < server.max_in_flight <= 3


def test_prompt_varies_across_requests_and_seed_repeats_it(tmp_path):
    with FakeOpenAIServer(api_key=KEY) as server:
        run(server, tmp_path / "a.jsonl", 8, seed=3)
    prompts = server.prompts()
    assert len(set(prompts)) == 8
    topics = {re.search(r"Topic: (.*?)\. Side", p).group(1) for p in prompts}
    casts = {re.search(r"between \d people \((.*?)\)", p).group(1) for p in prompts}
    assert len(topics) > 3 and len(casts) == 8

    with FakeOpenAIServer(api_key=KEY) as again:
        run(again, tmp_path / "b.jsonl", 8, seed=3)
    assert sorted(again.prompts()) == sorted(prompts)  # arrival order may differ


def test_wrong_api_key_stops_with_a_clear_error(tmp_path, capsys):
    with FakeOpenAIServer(api_key="the-real-key") as server:
        code = gen.main(["--out", str(tmp_path / "gen.jsonl"), "--count", "20",
                         "--base-url", server.base_url, "--api-key", "wrong", "--concurrency", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert "HTTP 401" in err and "Incorrect API key" in err and "--api-key" in err
    assert "Traceback" not in err
    assert len(server.requests) <= 2  # it stopped instead of trying all 20


def test_connection_refused_is_a_clear_error(tmp_path, capsys):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = gen.main(["--out", str(tmp_path / "gen.jsonl"), "--count", "2",
                     "--base-url", f"http://127.0.0.1:{port}/v1"])
    err = capsys.readouterr().err
    assert code == 1
    assert "connection refused" in err and "Traceback" not in err


@pytest.mark.parametrize("base_url", ["localhost:8000/v1", "ftp://example.com/v1", "http://"])
def test_bad_base_url_is_a_clear_error(tmp_path, capsys, base_url):
    code = gen.main(["--out", str(tmp_path / "gen.jsonl"), "--count", "1", "--base-url", base_url])
    err = capsys.readouterr().err
    assert code == 1 and "bad base URL" in err and "Traceback" not in err


def test_base_url_without_v1_gets_a_hint(tmp_path, capsys):
    with FakeOpenAIServer(api_key=KEY) as server:
        code = gen.main(["--out", str(tmp_path / "gen.jsonl"), "--count", "1", "--api-key", KEY,
                         "--base-url", server.base_url.removesuffix("/v1")])
    err = capsys.readouterr().err
    assert code == 1 and "HTTP 404" in err and "/v1" in err and "Traceback" not in err


def test_command_line_end_to_end(tmp_path, capsys):
    out = tmp_path / "gen.jsonl"
    with FakeOpenAIServer(api_key=KEY) as server:
        code = gen.main(["--out", str(out), "--count", "3", "--base-url", server.base_url + "/",
                         "--api-key", KEY, "--model", "local-model", "--seed", "1"])
    assert code == 0
    assert len(load_conversations(out)) == 3
    assert {r["json"]["model"] for r in server.requests} == {"local-model"}
    assert f"{out}: 3 of 3 conversations" in capsys.readouterr().out


def test_flags_win_over_environment_over_defaults():
    env = {"CHIMEIN_GEN_BASE_URL": "http://env:1/v1", "CHIMEIN_GEN_MODEL": "env-model",
           "CHIMEIN_GEN_API_KEY": "env-key"}
    none = argparse.Namespace(base_url=None, model=None, api_key=None)
    flags = argparse.Namespace(base_url="http://flag:2/v1/chat/completions", model="flag-model",
                               api_key="flag-key")
    assert endpoint_from(none, {}) == Endpoint(gen.DEFAULT_BASE_URL, gen.DEFAULT_MODEL, None)
    assert endpoint_from(none, env) == Endpoint("http://env:1/v1", "env-model", "env-key")
    assert endpoint_from(flags, env) == Endpoint("http://flag:2/v1", "flag-model", "flag-key")
    assert gen.DEFAULT_MODEL == "mistralai/Mixtral-8x7B-Instruct-v0.1"


ARRAY = '[{"role": "user", "name": "Ana", "content": "a [note] here"}]'


@pytest.mark.parametrize("answer", [
    ARRAY,
    fenced(ARRAY),
    f"```\n{ARRAY}\n```",
    f"Here you go [as requested]:\n{ARRAY}\nHope that helps [1].",
    f"Step [1]: think.\n```json\n{ARRAY}\n```",
])
def test_extract_json_array(answer):
    assert extract_json_array(answer) == json.loads(ARRAY)


@pytest.mark.parametrize("answer", ["no json here", "[1, 2, 3]", "[]", '{"role": "user"}', "[{"])
def test_extract_json_array_rejects_answers_without_messages(answer):
    with pytest.raises(ValueError, match="no JSON array of messages"):
        extract_json_array(answer)


def test_parse_answer_cleans_and_checks():
    answer = json.dumps([{"role": "user", "name": " Ana ", "content": " hi ", "time": "10:00"},
                         {"role": "assistant", "name": "assistant", "content": "Hello."}])
    assert parse_answer(answer) == [{"role": "user", "name": "Ana", "content": "hi"},
                                    {"role": "assistant", "content": "Hello."}]
    with pytest.raises(ValueError, match="two assistant messages"):
        parse_answer(json.dumps([{"role": "user", "name": "A", "content": "x"},
                                 {"role": "assistant", "content": "y"},
                                 {"role": "assistant", "content": "z"}]))
    with pytest.raises(ValueError, match="signed 'Assistant'"):
        parse_answer(json.dumps([{"role": "user", "name": "Assistant", "content": "hi all"}]))


def test_prompt_pools_and_policy():
    assert len(set(TOPICS)) >= 60
    assert len(set(NAMES)) >= 150
    rng = random.Random(0)
    specs = [draw_spec(rng) for _ in range(300)]
    assert {len(s.names) for s in specs} == {2, 3, 4, 5}
    assert min(s.message_count for s in specs) == 6 and max(s.message_count for s in specs) == 20
    assert {s.silent_case for s in specs} == set(SILENT_CASES)
    assert not any(s.speak_kind == "none" and s.silent_case == "thanks" for s in specs)

    prompt = build_prompt(specs[0])
    for rule in ("It speaks right after a message when", "It stays silent after",
                 "rhetorical questions", "another sense", "other bots", "one to three sentences",
                 "JSON array"):
        assert rule in prompt
    assert all(name in prompt for name in specs[0].names)
