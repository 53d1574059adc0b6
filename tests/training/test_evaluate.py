"""Evaluation: decision points, the JSON contract, the report (the arithmetic: test_metrics.py)."""

from __future__ import annotations

import json

import pytest

from models.threshold import SPEAK_THRESHOLD
from models.turns import Turn
from training.dataset import Conversation
from training.evaluate import is_addressed, main
from training.points import decision_points, rename_bot, sample_conversations

REQUIRED_KEYS = {
    "speak_precision", "speak_recall", "speak_f1", "balanced_accuracy",
    "false_interruption_rate", "missed_intervention_rate", "decisions",
}

# Two short chats where people call the bot "Sage": 6 decision points, 2 speak points.
TINY_DATA = [
    [
        {"role": "user", "name": "Ana", "content": "anyone up for pizza tonight?"},
        {"role": "user", "name": "Bo", "content": "sure, 8pm?"},
        {"role": "user", "name": "Ana", "content": "@Sage what's the capital of Peru?"},
        {"role": "assistant", "content": "Lima is the capital of Peru."},
        {"role": "user", "name": "Bo", "content": "thanks"},
    ],
    [
        {"role": "user", "name": "Cy", "content": "I forgot who wrote Dune"},
        {"role": "assistant", "content": "Frank Herbert wrote Dune."},
        {"role": "user", "name": "Dee", "content": "Sage is handy"},
    ],
]


# -- metric arithmetic -------------------------------------------------------------------


def test_addressed_rule_is_naive_on_purpose():
    assert is_addressed("@assistant what time is it")
    assert is_addressed("hey Bot, how far is the moon?")
    assert is_addressed("my assistant manager kept me late")  # POLICY says silent; the rule does not know
    assert not is_addressed("the robot vacuum broke")
    assert not is_addressed("assistants are overrated")
    assert not is_addressed("Sage, what's the capital of Peru?")  # until --bot-name rewrites it


# -- decision points --------------------------------------------------------------------


def test_every_user_message_is_a_decision_with_the_gold_turns_before_it():
    points = decision_points(TINY)
    assert [(p.conversation, p.message) for p in points] == [(0, 0), (0, 1), (0, 2), (0, 4), (1, 0), (1, 2)]
    assert [p.should_speak for p in points] == [False, False, True, False, True, False]
    assert points[2].reference == "Lima is the capital of Peru."
    assert points[3].reference is None
    assert points[3].window[-2] == Turn.assistant("Lima is the capital of Peru.")
    assert points[3].window[-1] == Turn.user("Bo", "thanks")
    assert len(points[4].window) == 1  # a new conversation starts from its own first message


def test_bot_name_rewrite_reaches_user_messages_only():
    renamed = [messages for _, messages in rename_bot(TINY + [Conversation([], [
        {"role": "user", "name": "Eve", "content": "SAGE? sausage and sages"},
        {"role": "assistant", "content": "Sage here."},
    ])], ("Sage",))]
    assert renamed[0][2]["content"] == "@assistant what's the capital of Peru?"
    assert renamed[1][2]["content"] == "assistant is handy"
    assert renamed[2][0]["content"] == "assistant? sausage and sages"
    assert renamed[2][1]["content"] == "Sage here."  # the bot's own words are not a person's
    assert TINY_DATA[0][2]["content"] == "@Sage what's the capital of Peru?"  # input left alone
    assert rename_bot(TINY, ()) == TINY


def test_kind_and_notes_reach_the_points():
    points = decision_points([Conversation(["Dune: Frank Herbert, 1965."], [
        {"role": "user", "name": "Cy", "content": "who wrote dune again", "kind": "open_gap"},
        {"role": "assistant", "content": "Frank Herbert."},
        {"role": "user", "name": "Dee", "content": "ty"}])])
    assert [p.kind for p in points] == ["open_gap", None]
    assert points[0].notes == ["Dune: Frank Herbert, 1965."]


def test_a_sample_keeps_whole_conversations_spread_evenly():
    points = decision_points(TINY * 5)  # 10 conversations of 3 or 4 points
    sample = sample_conversations(points, 8)
    kept = sorted({p.conversation for p in sample})
    assert kept[0] == 0 and kept[-1] == 9 and len(kept) < 10
    assert all(len([p for p in sample if p.conversation == c]) == len([p for p in points if p.conversation == c])
               for c in kept)
    assert sample_conversations(points, 0) == points


TINY = [Conversation([], messages) for messages in TINY_DATA]


# -- the command and its JSON contract ----------------------------------------------------


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in TINY_DATA), encoding="utf-8")
    return path


@pytest.fixture
def reuse_loaded_model(monkeypatch, loaded):
    """main() gets the session's bare model instead of loading a second copy."""
    import models.loading

    requests = []

    def fake_load_model(model="embedded", adapter="auto", **kwargs):
        requests.append((model, adapter))
        return loaded

    monkeypatch.setattr(models.loading, "load_model", fake_load_model)
    return requests


def test_json_contract_report_and_bot_name(tiny_file, tmp_path, capsys, reuse_loaded_model):
    report = tmp_path / "report"
    status = main(["--data", str(tiny_file), str(tiny_file), "--adapter", "none", "--bot-name", "Sage,sagebot",
                   "--json", "--replies", "1", "--report", str(report)])
    assert status == 0
    assert reuse_loaded_model == [("embedded", "none")]
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert REQUIRED_KEYS <= set(result)
    assert set(result["baselines"]) == {"always_silent", "addressed_rule", "prompted_base"}
    for row in [result, *result["baselines"].values()]:
        assert REQUIRED_KEYS <= set(row)
        assert row["decisions"] == 12  # two files (the same one twice) are scored together
        for key in REQUIRED_KEYS - {"decisions"}:
            assert isinstance(row[key], float) and 0.0 <= row[key] <= 1.0, key
    assert result["speak_points"] == 4 and result["silent_points"] == 8
    assert result["conversations"] == 4
    assert result["threshold"] == SPEAK_THRESHOLD  # no adapter, so no stored threshold: the fallback
    assert result["kinds"] == {}
    assert result["decisions_per_second"] > 0
    assert [row["threshold"] for row in result["pr_curve"]][:2] == [0.05, 0.1]
    assert len(result["pr_curve"]) == 19
    # The rewrite makes "@Sage ..." addressed (a hit) and "Sage is handy" too (a naive false alarm).
    assert result["baselines"]["addressed_rule"]["confusion"] == {"tp": 2, "fp": 2, "fn": 2, "tn": 6}
    assert result["baselines"]["always_silent"]["missed_intervention_rate"] == 1.0

    sample = result["reply_samples"][0]
    assert sample["context"][-1] == "Ana: @assistant what's the capital of Peru?"
    assert sample["reference"] == "Lima is the capital of Peru."
    assert isinstance(sample["reply"], str)
    assert len(result["reply_samples"]) == 1

    assert result["report"] == str(report / "report.md")
    page = (report / "report.md").read_text(encoding="utf-8")
    for expected in ("| **model** |", "prompted_base", "confusion_matrix.png", "threshold_curve.png",
                     "Worst false interruptions", "Worst misses", "Lima is the capital of Peru.",
                     "Errors by kind of moment"):
        assert expected in page
    for picture in ("confusion_matrix.png", "threshold_curve.png"):
        assert (report / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_data_fails_with_file_and_line_before_loading_a_model(tmp_path, capsys, reuse_loaded_model):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(TINY_DATA[0]) + "\n" + '[{"role": "assistant", "content": "hi"}]\n')
    assert main(["--data", str(bad), "--json"]) == 1
    assert f"{bad}:2: message 1: the conversation starts with an assistant message" in capsys.readouterr().err
    assert reuse_loaded_model == []


def test_without_baselines_and_replies(engine, tiny_file):
    from training.evaluate import evaluate_file

    result = evaluate_file(tiny_file, engine, threshold=0.0, baselines=False, replies=0)
    assert result["threshold_source"] == "given"
    assert result["baselines"] == {} and result["reply_samples"] == []
    assert result["reply_overlap_f1"] is None
    assert result["speak_recall"] == 1.0 and result["false_interruption_rate"] == 1.0  # p >= 0 always speaks
    json.dumps(result)  # everything in it is JSON
