"""Data checks: every bad line is reported as ``file:line: reason``; the statistics add up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.dataset import (
    Conversation,
    DatasetError,
    dataset_stats,
    load_conversations,
    main,
    parse_line,
    validate_conversation,
)

BAD = Path(__file__).parents[1] / "data" / "bad"

# Each file in tests/data/bad: the line that is wrong, and words the reason must contain.
BAD_CASES = {
    "not_json.jsonl": (3, "not JSON"),
    "not_a_list.jsonl": (3, "expected a JSON array"),
    "empty_conversation.jsonl": (3, "empty conversation"),
    "message_not_object.jsonl": (3, "message 2: expected an object"),
    "starts_with_assistant.jsonl": (1, "starts with an assistant message"),
    "two_assistant_turns.jsonl": (3, "message 3: two assistant messages in a row"),
    "missing_name.jsonl": (3, "message 2: user message without a name"),
    "empty_name.jsonl": (3, "message 2: user message without a name"),
    "empty_content.jsonl": (3, "message 2: content is empty"),
    "unknown_role.jsonl": (3, "message 1: unknown role 'system'"),
    "response_marker.jsonl": (3, "starts with the marker '(response)'"),
    "silence_marker.jsonl": (3, "starts with the marker '(silence)'"),
}


def test_every_bad_file_has_an_expectation():
    assert sorted(p.name for p in BAD.glob("*.jsonl")) == sorted(BAD_CASES)


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_bad_line_names_file_and_line(name):
    line, reason = BAD_CASES[name]
    path = BAD / name
    with pytest.raises(DatasetError) as caught:
        load_conversations(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert reason in message
    assert (caught.value.path, caught.value.line) == (str(path), line)


@pytest.mark.parametrize("name", sorted(BAD_CASES))
def test_command_line_reports_bad_line_and_fails(name, capsys):
    line, reason = BAD_CASES[name]
    assert main([str(BAD / name)]) == 1
    err = capsys.readouterr().err
    assert f"{BAD / name}:{line}: " in err and reason in err
    assert "Traceback" not in err


def test_blank_lines_are_skipped_and_extra_keys_ignored(tmp_path):
    path = tmp_path / "ok.jsonl"
    conversation = [{"role": "user", "name": "Ana", "content": "hi", "timestamp": 1},
                    {"role": "assistant", "content": "Hello!", "note": "extra"}]
    path.write_text("\n\n" + json.dumps(conversation) + "\n   \n" + json.dumps(conversation))
    assert load_conversations(path) == [([], conversation), ([], conversation)]


def test_unreadable_file_names_the_file(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DatasetError, match=f"^{missing}: "):
        load_conversations(missing)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b'[{"role": "user", "name": "Ana", "content": "ok"}]\n"caf\xe9"\n')
    with pytest.raises(DatasetError, match=r":2: not UTF-8"):
        load_conversations(path)


def test_validate_conversation_is_a_plain_value_error():
    # training.generate uses it on model answers, which have no file or line.
    with pytest.raises(ValueError, match="^message 3: two assistant messages in a row$"):
        validate_conversation([{"role": "user", "name": "A", "content": "x"},
                               {"role": "assistant", "content": "y"},
                               {"role": "assistant", "content": "z"}])
    # A marker further into the text is just text.
    validate_conversation([{"role": "user", "name": "A", "content": "what does (silence) mean"},
                           {"role": "assistant", "content": "It means quiet (silence)."}])


def user(name, text):
    return {"role": "user", "name": name, "content": text}


def bot(text):
    return {"role": "assistant", "content": text}


def test_stats_on_a_hand_made_file(tmp_path):
    conversations = [
        # 3 people, 4 user turns, 1 speak turn
        [user("Ana", "hi"), user("Bo", "yo"), user("Cy", "capital of peru?"), bot("Lima."),
         user("Ana", "thx")],
        # 2 people, 2 user turns, never speaks
        [user("Ana", "lunch?"), user("Bo", "sure")],
        # 5 people, 6 user turns, 2 speak turns
        [user("A", "1"), user("B", "2"), user("C", "@assistant 3?"), bot("3."), user("D", "4"),
         user("E", "@assistant 5?"), bot("5."), user("A", "6")],
    ]
    path = tmp_path / "hand.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in conversations) + "\n")

    stats = dataset_stats(load_conversations(path))
    assert stats == dataset_stats([Conversation([], c) for c in conversations])

    assert stats == {
        "conversations": 3,
        "user_turns": 12,
        "speak_turns": 3,
        "speak_rate": 0.25,
        "participants_min": 2,
        "participants_mean": pytest.approx(10 / 3),
        "participants_max": 5,
        "conversations_without_speaking": 1,
    }


def test_stats_of_nothing():
    stats = dataset_stats([])
    assert stats["conversations"] == 0 and stats["speak_rate"] == 0.0
    assert stats["participants_min"] == stats["participants_max"] == 0


def test_command_line_prints_stats_per_file_and_total(tmp_path, capsys):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(json.dumps([user("Ana", "q?"), bot("a."), user("Bo", "ok")]) + "\n")
    second.write_text(json.dumps([user("Ana", "hi"), user("Bo", "hi")]) + "\n")

    assert main([str(first), str(second)]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{first}: 1 conversations, 2 user turns, 1 speak turns (speak rate")
    assert "(speak rate 50.0%)" in out[0]
    assert out[1].startswith(f"{second}: 1 conversations, 2 user turns, 0 speak turns")
    assert out[2].startswith("total: 2 conversations, 4 user turns, 1 speak turns (speak rate 25")
    assert "1 conversations where it never speaks" in out[2]


# -- everything training cannot use is rejected with file, line and the real reason ---------

OK = '{"role": "user", "name": "Ana", "content": "hi"}'

REJECTED_LINES = {
    "lone surrogate": ('[{"role": "user", "name": "Ana", "content": "hi \\ud800 there"}]',
                       "message 1: content contains a lone surrogate"),
    "NUL": ('[{"role": "user", "name": "Ana", "content": "a\\u0000b"}]', "message 1: content contains a NUL"),
    "surrogate in a name": ('[{"role": "user", "name": "\\udfff", "content": "hi"}]',
                            "message 1: name contains a lone surrogate"),
    "number content": ('[{"role": "user", "name": "Ana", "content": 5}]',
                       "message 1: content must be a string, got int"),
    "list content": ('[{"role": "user", "name": "Ana", "content": ["hi"]}]',
                     "message 1: content must be a string, got list"),
    "number name": ('[{"role": "user", "name": 7, "content": "hi"}]', "message 1: name must be a string, got int"),
    "huge name": ('[{"role": "user", "name": "' + "x" * 100 + '", "content": "hi"}]',
                  "name longer than 32 characters"),
    "deep nesting": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "unknown kind": ('[{"role": "user", "name": "Ana", "content": "hi", "kind": "smalltalk"}]',
                     "message 1: unknown kind 'smalltalk'"),
    "notes not a list": ('{"notes": "Dune", "conversation": [' + OK + ']}', "notes must be an array of strings"),
    "a note not a string": ('{"notes": ["ok", 3], "conversation": [' + OK + ']}', "note 2 must be a string"),
    "an empty note": ('{"notes": [" "], "conversation": [' + OK + ']}', "note 1 is empty"),
    "object without conversation": ('{"notes": ["x"]}', 'expected a JSON array of messages or'),
    "unknown object key": ('{"notes": [], "conversation": [' + OK + '], "extra": 1}', "unknown key(s) 'extra'"),
}


@pytest.mark.parametrize("case", sorted(REJECTED_LINES))
def test_unusable_lines_are_rejected_with_the_reason(case, tmp_path):
    line, reason = REJECTED_LINES[case]
    path = tmp_path / "data.jsonl"
    path.write_text("[" + OK + "]\n" + line + "\n", encoding="utf-8")
    with pytest.raises(DatasetError) as caught:
        load_conversations(path)
    assert str(caught.value).startswith(f"{path}:2: "), str(caught.value)[:200]
    assert reason in str(caught.value)


@pytest.mark.parametrize("text", ["", "\n\n   \n"])
def test_empty_and_blank_files_are_rejected(text, tmp_path, capsys):
    path = tmp_path / "empty.jsonl"
    path.write_text(text)
    with pytest.raises(DatasetError, match=f"^{path}: no conversations"):
        load_conversations(path)
    assert main([str(path)]) == 1 and "no conversations" in capsys.readouterr().err


def test_notes_objects_and_kinds_are_read_into_notes_and_messages():
    messages = [{"role": "user", "name": "Cy", "content": "who wrote dune?", "kind": "open_gap"},
                {"role": "assistant", "content": "Frank Herbert."}]
    assert parse_line(json.dumps({"notes": ["Dune (1965) by Frank Herbert."], "conversation": messages})) == \
        Conversation(["Dune (1965) by Frank Herbert."], messages)
    notes, read = parse_line(json.dumps(messages))
    assert notes == [] and read == messages
    assert parse_line(json.dumps({"conversation": messages})).notes == []


def test_shipped_data_files_pass_the_check():
    for path in sorted((Path(__file__).parents[2] / "data").glob("*.jsonl")):
        if path.name != "answers.jsonl":  # the answers set has its own format (issue 11)
            assert load_conversations(path), path
