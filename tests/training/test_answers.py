"""The answer evaluation: matching rules, the item format, the counts, the CLI hook."""

import json

import pytest

from training import answers, evaluate
from training.answers import (
    contains,
    contradicts_itself,
    evaluate_answers,
    is_correct,
    load_items,
    sentences,
    summarise,
)
from training.dataset import DatasetError


@pytest.mark.parametrize(("reply", "phrase", "found"), [
    ("The capital is Canberra.", "canberra", True),  # case-insensitive
    ("Capitals are fun", "capital", False),  # whole words only
    ("Blotting works best", "blot*", True),  # a trailing * matches any word ending
    ("15% of 80 is 12.", "12", True),
    ("15% of 80 is 12.5", "12", False),  # a number is not the start of a longer number
    ("it is 112", "12", False),
    ("That's $21.85 each.", "21.85", True),
    ("It's 1,609.34 m", "1,609*", True),  # * continues a number through its decimals
    ("about 8.05 km", "8.0*", True),
    ("Tilt   your head back", "tilt your head back", True),  # a space matches any run of spaces
    ("It’s −40 degrees", "-40", True),  # typographic minus and apostrophe are normalised
])
def test_matching(reply, phrase, found):
    assert contains(reply, phrase) is found


def test_every_accept_group_and_no_reject_phrase():
    accept = [["forward"], ["pinch*", "press*"]]
    reject = ["tourniquet", "tilt your head back"]
    assert is_correct("Lean forward and pinch the soft part of the nose.", accept, reject)
    assert not is_correct("Lean forward.", accept, reject)  # the second group has no alternative in it
    assert not is_correct("Lean forward, pinch it, and use a tourniquet.", accept, reject)


@pytest.mark.parametrize(("reply", "contradicts"), [
    ("The capital is Canberra, not Canberra.", True),
    ("Yes. No, it is not safe.", True),
    ("15% of 80 is 1.5. So 15% of 80 is 12.", True),
    ("It is safe. It is not safe to mix them.", True),
    ("Canberra is the capital, not Sydney.", False),
    ("15% of 80 is 12, so the total is 92.", False),
    ("No, mixing them releases toxic gas.", False),
])
def test_self_contradiction_detector(reply, contradicts):
    assert contradicts_itself(reply) is contradicts


def test_sentences_keep_numbers_whole():
    assert len(sentences("That's $21.85 each. It is 3.5 km. Ok! Fine")) == 4


def _write(tmp_path, records):
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


ITEM = {"id": "a", "category": "geography", "accept": [["canberra"]], "reject": ["sydney"],
        "conversation": [{"role": "user", "name": "Ana", "content": "@assistant capital of Australia?"}]}


def test_load_items_defaults_the_plain_question_to_the_last_message(tmp_path):
    (item,) = load_items(_write(tmp_path, [ITEM]))
    assert item.question == "capital of Australia?"


@pytest.mark.parametrize(("change", "reason"), [
    ({"accept": []}, "accept"),
    ({"accept": [["ok"], []]}, "accept"),
    ({"reject": "sydney"}, "reject"),
    ({"conversation": []}, "empty conversation"),
    ({"conversation": [{"role": "user", "name": "A", "content": "q"}, {"role": "assistant", "content": "a"}]},
     "end with a person"),
])
def test_bad_items_fail_with_file_and_line(tmp_path, change, reason):
    path = _write(tmp_path, [ITEM, {**ITEM, "id": "b", **change}])
    with pytest.raises(DatasetError, match=rf"answers.jsonl:2: .*{reason}"):
        load_items(path)


def test_duplicate_ids_are_refused(tmp_path):
    with pytest.raises(DatasetError, match="duplicate id"):
        load_items(_write(tmp_path, [ITEM, ITEM]))


def test_the_shipped_answers_set_loads():
    items = load_items("data/answers.jsonl")
    assert len(items) >= 200
    assert {"geography", "dates", "science", "units", "arithmetic", "bills", "definitions", "creators",
            "howto"} <= {i.category for i in items}


def test_summary_counts(tmp_path):
    items = load_items(_write(tmp_path, [ITEM, {**ITEM, "id": "b", "category": "howto"}]))
    result = summarise(items, ["It's Canberra.", "Sydney. Sydney. Sydney. Sydney."])
    assert result["answer_accuracy"] == 0.5
    assert result["per_category"] == {"geography": {"accuracy": 1.0, "items": 1},
                                      "howto": {"accuracy": 0.0, "items": 1}}
    assert result["unsafe_advice_rate"] == 1.0  # the advice item's reply holds its reject phrase
    assert result["over_three_sentences"] == 1


class ScriptedEngine:
    """Stands in for the engine: the evaluation only needs reply, forget and describe."""

    def __init__(self, reply):
        self.text = reply
        self.windows = []

    def reply(self, window, key):
        self.windows.append(window)
        return self.text

    def forget(self, key):
        pass

    def describe(self):
        return {"name": "scripted"}


def test_evaluate_answers_forces_a_reply_at_the_end_and_writes_replies(tmp_path):
    engine = ScriptedEngine("Canberra.")
    out = tmp_path / "replies.jsonl"
    result = evaluate_answers(_write(tmp_path, [ITEM]), engine, baselines=False, replies_out=out)
    assert result["answer_accuracy"] == 1.0 and result["baselines"] == {}
    assert engine.windows[0][-1].text == "@assistant capital of Australia?"
    assert json.loads(out.read_text()) == {"id": "a", "reply": "Canberra.", "correct": True}


def test_training_evaluate_hands_answers_to_the_answer_evaluation(monkeypatch):
    seen = []
    monkeypatch.setattr(answers, "main", lambda argv: seen.append(argv) or 0)
    assert evaluate.main(["--answers", "x.jsonl", "--json"]) == 0
    assert seen == [["--answers", "x.jsonl", "--json"]]
