"""Load and check conversations in the data format, and describe a data set.

The format (DESIGN.md, "Data format"): JSON Lines, one conversation per line, each a
JSON array of ``{"role": "user", "name": ..., "content": ...}`` and
``{"role": "assistant", "content": ...}`` messages. An assistant message right after a
user message means "speak here"; no assistant message means "stay silent".

Check files and print their statistics::

    python -m training.dataset data/train.jsonl data/dev.jsonl

A bad line stops the check with ``file:line: reason`` on stderr and exit status 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from models.turns import RESPONSE, SILENCE

ROLES = ("user", "assistant")


class DatasetError(ValueError):
    """A data file that breaks the format. The message is ``file:line: reason``.

    ``line`` is None when the file as a whole cannot be read.
    """

    def __init__(self, path: str | Path, line: int | None, reason: str):
        super().__init__(f"{path}: {reason}" if line is None else f"{path}:{line}: {reason}")
        self.path = str(path)
        self.line = line
        self.reason = reason


def _is_text(value: object) -> bool:
    return isinstance(value, str) and value.strip() != ""


def validate_conversation(conversation: object) -> None:
    """Raise ValueError with the reason if ``conversation`` breaks the data format.

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
        if role == "user" and not _is_text(message.get("name")):
            raise ValueError(f"{where}: user message without a name")
        content = message.get("content")
        if not _is_text(content):
            raise ValueError(f"{where}: empty content")
        # The markers are added when the text is rendered for the model; data that
        # already carries one would train "(response) (response) ..." or a silent reply.
        if role == "assistant" and content.lstrip().startswith((RESPONSE, SILENCE)):
            marker = RESPONSE if content.lstrip().startswith(RESPONSE) else SILENCE
            raise ValueError(
                f"{where}: assistant content starts with the marker {marker!r}; "
                "write only the words the assistant says"
            )
        previous_role = role


def load_conversations(path: str | Path) -> list[list[dict]]:
    """Read a JSONL file of conversations; raise DatasetError at the first bad line.

    Blank lines are skipped (they still count for line numbers).
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
            conversation = json.loads(text)
        except json.JSONDecodeError as error:
            raise DatasetError(path, line_number, f"not JSON ({error.msg})") from None
        try:
            validate_conversation(conversation)
        except ValueError as error:
            raise DatasetError(path, line_number, str(error)) from None
        conversations.append(conversation)
    return conversations


def dataset_stats(conversations: Sequence[Sequence[dict]]) -> dict:
    """Counts that say whether a data set looks like the policy: mostly silence.

    ``speak_rate`` is speak turns per user turn (each assistant message answers the
    user message before it). Participants are the distinct user names of a conversation.
    """
    user_turns = speak_turns = silent_conversations = 0
    participants = []
    for conversation in conversations:
        users = [m for m in conversation if m["role"] == "user"]
        speaks = len(conversation) - len(users)
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
