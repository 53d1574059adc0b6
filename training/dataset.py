"""Load and check conversations in the data format, and describe a data set.

The format (data/README.md): JSON Lines, one conversation per line, each a JSON array
of ``{"role": "user", "name": ..., "content": ...}`` and ``{"role": "assistant",
"content": ...}`` messages, or an object ``{"notes": [passage, ...], "conversation":
[messages]}`` when retrieval showed notes. An assistant message right after a user
message means "speak here"; no assistant message means "stay silent". A user message
may carry ``"kind"`` (``KINDS``). ``load_conversations`` turns every line into
``(notes, messages)``; everything that reads data goes through it, and whatever it
accepts, training and evaluation can use.

Check files and print their statistics::

    python -m training.dataset data/train.jsonl data/dev.jsonl

A bad line stops the check with ``file:line: reason`` on stderr and exit status 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from models.turns import RESPONSE, SILENCE

ROLES = ("user", "assistant")
# The kinds of moment a user message may be labelled with (data/README.md), for the
# evaluation's per-category error rates.
SPEAK_KINDS = ("addressed", "open_gap", "followup")
SILENT_KINDS = ("chatter", "named_person", "people_only", "answered", "thanks", "rhetorical",
                "third_person", "other_sense", "other_bot")
KINDS = SPEAK_KINDS + SILENT_KINDS
MAX_NAME_CHARS = 32  # Discord's limit for a display name


class Conversation(NamedTuple):
    """One line of a data file: the notes retrieval showed (often none) and the messages."""

    notes: list[str]
    messages: list[dict]


class DatasetError(ValueError):
    """A data file that breaks the format. The message is ``file:line: reason``.

    ``line`` is None when the file as a whole cannot be read.
    """

    def __init__(self, path: str | Path, line: int | None, reason: str):
        super().__init__(f"{path}: {reason}" if line is None else f"{path}:{line}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


def _check_text(value: object, what: str) -> str:
    """A string a tokenizer can take: no lone surrogate, no NUL, not blank."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} is empty")
    if "\x00" in value:
        raise ValueError(f"{what} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"{what} contains a lone surrogate ({value[error.start]!r})") from None
    return value


def validate_conversation(conversation: object) -> None:
    """Raise ValueError with the reason if ``conversation`` (a message array) breaks the data format.

    Unknown extra keys on a message are allowed and ignored. Messages are numbered
    from 1 in the reasons, so "message 3" is the third element of the array.
    """
    if not isinstance(conversation, list):
        raise ValueError(f"expected a JSON array of messages, got {type(conversation).__name__}")
    if not conversation:
        raise ValueError("empty conversation")
    previous_role = None
    for number, message in enumerate(conversation, 1):
        where = f"message {number}"
        if not isinstance(message, dict):
            raise ValueError(f"{where}: expected an object, got {type(message).__name__}")
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"{where}: unknown role {role!r} (expected 'user' or 'assistant')")
        if role == "assistant" and previous_role is None:
            raise ValueError(f"{where}: the conversation starts with an assistant message")
        if role == "assistant" and previous_role == "assistant":
            raise ValueError(f"{where}: two assistant messages in a row")
        if role == "user":
            _check_user(message, where)
        content = _check_text(message.get("content"), f"{where}: content")
        # The markers are added when the text is rendered for the model; data that
        # already carries one would train "(response) (response) ..." or a silent reply.
        if role == "assistant" and content.lstrip().startswith((RESPONSE, SILENCE)):
            marker = RESPONSE if content.lstrip().startswith(RESPONSE) else SILENCE
            raise ValueError(
                f"{where}: assistant content starts with the marker {marker!r}; "
                "write only the words the assistant says"
            )
        previous_role = role


def _check_user(message: dict, where: str) -> None:
    name = message.get("name")
    if name is None or (isinstance(name, str) and not name.strip()):
        raise ValueError(f"{where}: user message without a name")
    _check_text(name, f"{where}: name")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"{where}: name longer than {MAX_NAME_CHARS} characters (Discord's limit)")
    kind = message.get("kind")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"{where}: unknown kind {kind!r} (one of {', '.join(KINDS)})")


def parse_record(record: object) -> Conversation:
    """A decoded line -> (notes, messages): a plain message array, or
    ``{"notes": [str, ...], "conversation": [messages]}``. Raises ValueError with the reason."""
    notes: list[str] = []
    if isinstance(record, dict):
        if "conversation" not in record:
            raise ValueError('expected a JSON array of messages or {"notes": [...], "conversation": [...]}, '
                             'got an object without "conversation"')
        unknown = sorted(set(record) - {"notes", "conversation"})
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(map(repr, unknown))} beside notes and conversation")
        notes = record.get("notes", [])
        if not isinstance(notes, list):
            raise ValueError(f"notes must be an array of strings, got {type(notes).__name__}")
        for number, note in enumerate(notes, 1):
            _check_text(note, f"note {number}")
        record = record["conversation"]
    validate_conversation(record)
    return Conversation(list(notes), record)


def parse_line(text: str) -> Conversation:
    """One JSONL line -> (notes, messages); ValueError with the reason when it cannot be used."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON ({error.msg})") from None
    except RecursionError:
        raise ValueError("nested too deeply to be a conversation") from None
    return parse_record(record)


def load_conversations(path: str | Path) -> list[Conversation]:
    """Read a JSONL file of conversations; raise DatasetError at the first bad line.

    Blank lines are skipped (they still count for line numbers); a file with no
    conversation at all is an error, since training and evaluation cannot use it.
    """
    path = Path(path)
    try:
        raw_lines = path.read_bytes().splitlines()
    except OSError as error:
        raise DatasetError(path, None, error.strerror or str(error)) from None
    conversations = []
    for line_number, raw in enumerate(raw_lines, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise DatasetError(path, line_number, "not UTF-8 text") from None
        if not text.strip():
            continue
        try:
            conversations.append(parse_line(text))
        except ValueError as error:
            raise DatasetError(path, line_number, str(error)) from None
    if not conversations:
        raise DatasetError(path, None, "no conversations (the file is empty or blank)")
    return conversations


def load_files(paths: Sequence[str | Path]) -> list[Conversation]:
    """All conversations of several files, in order."""
    return [conversation for path in paths for conversation in load_conversations(path)]


def dataset_stats(conversations: Sequence[Conversation]) -> dict:
    """Counts that say whether a data set looks like the policy: mostly silence.

    ``speak_rate`` is speak turns per user turn (each assistant message answers the
    user message before it). Participants are the distinct user names of a conversation.
    """
    user_turns = speak_turns = silent_conversations = 0
    participants = []
    for _, messages in conversations:
        users = [m for m in messages if m["role"] == "user"]
        speaks = len(messages) - len(users)
        user_turns += len(users)
        speak_turns += speaks
        silent_conversations += speaks == 0
        participants.append(len({m["name"] for m in users}))
    return {
        "conversations": len(conversations),
        "user_turns": user_turns,
        "speak_turns": speak_turns,
        "speak_rate": speak_turns / user_turns if user_turns else 0.0,
        "participants_min": min(participants, default=0),
        "participants_mean": sum(participants) / len(participants) if participants else 0.0,
        "participants_max": max(participants, default=0),
        "conversations_without_speaking": silent_conversations,
    }


def format_stats(stats: dict) -> str:
    """One readable paragraph of ``dataset_stats`` output."""
    return (
        f"{stats['conversations']} conversations, {stats['user_turns']} user turns, "
        f"{stats['speak_turns']} speak turns (speak rate {stats['speak_rate']:.1%}); "
        f"participants per conversation {stats['participants_min']}-{stats['participants_max']} "
        f"(mean {stats['participants_mean']:.1f}); "
        f"{stats['conversations_without_speaking']} conversations where it never speaks"
    )


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m training.dataset",
        description="Check JSONL conversation files and print their statistics.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="JSONL files in the data format")
    args = parser.parse_args(argv)

    everything = []
    for file in args.files:
        try:
            conversations = load_conversations(file)
        except DatasetError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        everything.extend(conversations)
        print(f"{file}: {format_stats(dataset_stats(conversations))}")
    if len(args.files) > 1:
        print(f"total: {format_stats(dataset_stats(everything))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
