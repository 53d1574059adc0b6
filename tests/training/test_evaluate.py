"""Evaluation: metric arithmetic on hand-made cases, decision points, and the JSON contract."""

from __future__ import annotations

import json

import pytest

from models.turns import Turn
from training.evaluate import (
    Confusion,
    decision_points,
    evenly_spaced,
    is_addressed,
    main,
    overlap_f1,
    rename_bot,
    score_probabilities,
    scores,
    threshold_curve,
)

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


def test_confusion_counts_each_cell():
    gold = [True, True, True, False, False, False, False, False]
    predicted = [True, True, False, True, False, False, False, False]
    assert Confusion.of(gold, predicted) == Confusion(tp=2, fp=1, fn=1, tn=4)


def test_scores_on_a_hand_made_case():
    result = scores(Confusion(tp=2, fp=1, fn=1, tn=4))
    assert result["speak_precision"] == pytest.approx(2 / 3)
    assert result["speak_recall"] == pytest.approx(2 / 3)
    assert result["speak_f1"] == pytest.approx(2 / 3)
    assert result["balanced_accuracy"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert result["false_interruption_rate"] == pytest.approx(1 / 5)
    assert result["missed_intervention_rate"] == pytest.approx(1 / 3)
    assert result["decisions"] == 8
    assert result["confusion"] == {"tp": 2, "fp": 1, "fn": 1, "tn": 4}


def test_precision_and_recall_differ():
    result = scores(Confusion(tp=1, fp=3, fn=0, tn=6))
    assert result["speak_precision"] == pytest.approx(0.25)
    assert result["speak_recall"] == 1.0
    assert result["speak_f1"] == pytest.approx(2 * 0.25 / 1.25)
    assert result["false_interruption_rate"] == pytest.approx(3 / 9)


def test_zero_divisions_are_zero():
    always_silent = scores(Confusion(tp=0, fp=0, fn=3, tn=7))
    assert always_silent["speak_precision"] == 0.0  # never spoke: 0/0
    assert always_silent["speak_f1"] == 0.0
    assert always_silent["balanced_accuracy"] == 0.5
    assert always_silent["missed_intervention_rate"] == 1.0
    no_speak_points = scores(Confusion(tp=0, fp=0, fn=0, tn=5))
    assert no_speak_points["speak_recall"] == 0.0
    assert no_speak_points["missed_intervention_rate"] == 0.0
    empty = scores(Confusion())
    assert all(empty[k] == 0 for k in REQUIRED_KEYS)


def test_perfect_decisions():
    result = scores(Confusion.of([True, False, True], [True, False, True]))
    assert result["speak_f1"] == result["balanced_accuracy"] == 1.0
    assert result["false_interruption_rate"] == result["missed_intervention_rate"] == 0.0


def test_a_probability_equal_to_the_threshold_speaks():
    result = score_probabilities([True, False], [0.5, 0.49], threshold=0.5)
    assert result["confusion"] == {"tp": 1, "fp": 0, "fn": 0, "tn": 1}


def test_threshold_curve_trades_recall_for_precision():
    gold = [True, True, False, False]
    curve = threshold_curve(gold, [0.9, 0.3, 0.6, 0.1], thresholds=(0.2, 0.5, 0.95))
    assert [row["threshold"] for row in curve] == [0.2, 0.5, 0.95]
    assert [row["speak_recall"] for row in curve] == [1.0, 0.5, 0.0]
    assert [row["speak_precision"] for row in curve] == pytest.approx([2 / 3, 0.5, 0.0])
    assert [row["false_interruption_rate"] for row in curve] == [0.5, 0.5, 0.0]


def test_overlap_f1():
    assert overlap_f1("Lima is the capital.", "lima IS the capital") == 1.0
    assert overlap_f1("Lima", "Paris") == 0.0
    # common {the, cat} = 2; precision 2/4, recall 2/3
    assert overlap_f1("the cat sat", "The cat ran away!") == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert overlap_f1("the the cat", "the cat cat") == pytest.approx(2 / 3)  # counts, not sets
    assert overlap_f1("", "") == 1.0
    assert overlap_f1("Lima", "") == 0.0


def test_addressed_rule_is_naive_on_purpose():
    assert is_addressed("@assistant what time is it")
    assert is_addressed("hey Bot, how far is the moon?")
    assert is_addressed("my assistant manager kept me late")  # POLICY says silent; the rule does not know
    assert not is_addressed("the robot vacuum broke")
    assert not is_addressed("assistants are overrated")
    assert not is_addressed("Sage, what's the capital of Peru?")  # until --bot-name rewrites it


def test_evenly_spaced_includes_the_ends():
    assert evenly_spaced(10, 3) == [0, 4, 9]  # round(4.5) is 4
    assert evenly_spaced(3, 20) == [0, 1, 2]
    assert evenly_spaced(5, 1) == [0]
    assert evenly_spaced(5, 0) == evenly_spaced(0, 5) == []


# -- decision points --------------------------------------------------------------------


def test_every_user_message_is_a_decision_with_the_gold_turns_before_it():
    points = decision_points(TINY_DATA)
    assert [(p.conversation, p.message) for p in points] == [(0, 0), (0, 1), (0, 2), (0, 4), (1, 0), (1, 2)]
    assert [p.should_speak for p in points] == [False, False, True, False, True, False]
    assert points[2].reference == "Lima is the capital of Peru."
    assert points[3].reference is None
    assert points[3].window[-2] == Turn.assistant("Lima is the capital of Peru.")
    assert points[3].window[-1] == Turn.user("Bo", "thanks")
    assert len(points[4].window) == 1  # a new conversation starts from its own first message


def test_bot_name_rewrite_reaches_user_messages_only():
    renamed = rename_bot(TINY_DATA + [[
        {"role": "user", "name": "Eve", "content": "SAGE? sausage and sages"},
        {"role": "assistant", "content": "Sage here."},
    ]], ("Sage",))
    assert renamed[0][2]["content"] == "@assistant what's the capital of Peru?"
    assert renamed[1][2]["content"] == "assistant is handy"
    assert renamed[2][0]["content"] == "assistant? sausage and sages"
    assert renamed[2][1]["content"] == "Sage here."  # the bot's own words are not a person's
    assert TINY_DATA[0][2]["content"] == "@Sage what's the capital of Peru?"  # input left alone
    assert rename_bot(TINY_DATA, ()) == TINY_DATA


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
    status = main(["--data", str(tiny_file), "--adapter", "none", "--bot-name", "Sage,sagebot",
                   "--json", "--replies", "1", "--report", str(report)])
    assert status == 0
    assert reuse_loaded_model == [("embedded", "none")]
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert REQUIRED_KEYS <= set(result)
    assert set(result["baselines"]) == {"always_silent", "addressed_rule", "prompted_base"}
    for row in [result, *result["baselines"].values()]:
        assert REQUIRED_KEYS <= set(row)
        assert row["decisions"] == 6
        for key in REQUIRED_KEYS - {"decisions"}:
            assert isinstance(row[key], float) and 0.0 <= row[key] <= 1.0, key
    assert result["speak_points"] == 2 and result["silent_points"] == 4
    assert result["decisions_per_second"] > 0
    assert [row["threshold"] for row in result["pr_curve"]][:2] == [0.05, 0.1]
    assert len(result["pr_curve"]) == 19
    # The rewrite makes "@Sage ..." addressed (a hit) and "Sage is handy" too (a naive false alarm).
    assert result["baselines"]["addressed_rule"]["confusion"] == {"tp": 1, "fp": 1, "fn": 1, "tn": 3}
    assert result["baselines"]["always_silent"]["missed_intervention_rate"] == 1.0

    (sample,) = result["reply_samples"]
    assert sample["context"][-1] == "Ana: @assistant what's the capital of Peru?"
    assert sample["reference"] == "Lima is the capital of Peru."
    assert isinstance(sample["reply"], str)
    assert result["reply_overlap_f1"] == sample["overlap_f1"]

    assert result["report"] == str(report / "report.md")
    page = (report / "report.md").read_text(encoding="utf-8")
    for expected in ("| **model** |", "prompted_base", "confusion_matrix.png", "threshold_curve.png",
                     "Worst false interruptions", "Worst misses", "Lima is the capital of Peru."):
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
    assert result["baselines"] == {} and result["reply_samples"] == []
    assert result["reply_overlap_f1"] is None
    assert result["speak_recall"] == 1.0 and result["false_interruption_rate"] == 1.0  # p >= 0 always speaks
    json.dumps(result)  # everything in it is JSON
