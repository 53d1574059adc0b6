"""Grounded-answer accuracy: a reply is grounded when it carries the reference's key fact from the notes."""

from __future__ import annotations

from training.grounded import fact_points, grounded_accuracy, is_grounded

NOTES = ["Studio wifi: the password is glaze&fire2024."]
CONVERSATION = [
    {"role": "user", "name": "Wren", "content": "anyone know the wifi password?", "kind": "open_gap"},
    {"role": "assistant", "content": "It's glaze&fire2024.", "fact": "glaze&fire2024"},
    {"role": "user", "name": "Hugo", "content": "ty"},
    {"role": "user", "name": "Hugo", "content": "@assistant is there parking?"},
    {"role": "assistant", "content": "The notes don't say."},
]


class NotesEcho:
    """Answers with its first note when it has notes, else with a guess."""

    def __init__(self):
        self.forgotten = []

    def reply(self, window, key="default", notes=None):
        return f"I think it's {notes[0].split()[-1]}" if notes else "I think it's password123"

    def forget(self, key):
        self.forgotten.append(key)


def test_a_fact_matches_whatever_the_case_and_spacing():
    assert is_grounded("The meetup is on  saturday 14 March.", "Saturday 14 March")
    assert not is_grounded("The meetup is on Saturday.", "Saturday 14 March")


def test_only_replies_with_a_fact_are_scored_with_the_window_up_to_the_question():
    [point] = fact_points([(NOTES, CONVERSATION)])
    assert point.fact == "glaze&fire2024" and point.notes == NOTES
    assert [t.text for t in point.window] == ["anyone know the wifi password?"]


def test_accuracy_with_and_without_the_notes():
    engine = NotesEcho()
    result = grounded_accuracy(engine, [(NOTES, CONVERSATION), ([], [CONVERSATION[0]])])
    assert result["grounded_points"] == 1
    assert result["grounded_accuracy_with_notes"] == 1.0
    assert result["grounded_accuracy_without_notes"] == 0.0
    assert engine.forgotten == [("grounded", 0, 1)]


def test_data_without_facts_adds_nothing():
    assert grounded_accuracy(NotesEcho(), [([], [CONVERSATION[0]])]) == {}


def test_evaluate_reports_both_accuracies_next_to_the_decision_scores(tmp_path):
    import json

    from training.evaluate import evaluate_files
    from training.report import summary

    class Engine(NotesEcho):
        def decide(self, window, key="default", notes=None):
            return 0.9 if window[-1].text.endswith("?") else 0.1

        def describe(self):
            return {"model": "echo", "adapter": None}

    path = tmp_path / "notes.jsonl"
    path.write_text(json.dumps({"notes": NOTES, "conversation": CONVERSATION}) + "\n", encoding="utf-8")
    result = evaluate_files(path, Engine(), threshold=0.5, baselines=False, replies=5)
    assert result["speak_recall"] == 1.0
    assert (result["grounded_accuracy_with_notes"], result["grounded_accuracy_without_notes"]) == (1.0, 0.0)
    assert "100.0% with notes, 0.0% without, over 1 replies" in summary(result)
    assert "grounded_points" not in evaluate_files(path, Engine(), threshold=0.5, baselines=False, replies=0)
