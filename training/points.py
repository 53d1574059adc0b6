"""Decision points: every user message of a conversation is one speak/silence decision.

The model sees the conversation up to and including that message, with the gold
assistant turns before it. The gold label is "speak" when the next message is an
assistant message; ``kind`` is the message's label from the data (data/README.md),
if any; ``notes`` are the passages retrieval showed with the conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from models.names import rewrite_bot_names
from models.turns import Turn, from_records
from training.dataset import Conversation

CONTEXT_MESSAGES = 6  # messages of context shown with a mistake or a reply sample


@dataclass
class Point:
    """One decision: after user message ``message`` (0-based index) of conversation ``conversation``."""

    conversation: int
    message: int
    window: list[Turn]
    should_speak: bool
    reference: str | None  # the gold answer at a speak point
    p: float = 0.0  # the model's speak probability
    kind: str | None = None
    notes: list[str] = field(default_factory=list)


def rename_bot(conversations: Sequence[Conversation], bot_names: Sequence[str]) -> list[Conversation]:
    """The conversations with the bot's names in user messages rewritten as the bot would."""
    return [
        Conversation(notes, [{**m, "content": rewrite_bot_names(m["content"], bot_names)}
                             if m["role"] == "user" else m for m in messages])
        for notes, messages in conversations
    ]


def decision_points(conversations: Sequence[Conversation]) -> list[Point]:
    points = []
    for c, (notes, messages) in enumerate(conversations):
        turns = from_records(messages)
        for i, message in enumerate(messages):
            if message["role"] != "user":
                continue
            following = messages[i + 1] if i + 1 < len(messages) else None
            speak = following is not None and following["role"] == "assistant"
            points.append(Point(c, i, turns[: i + 1], speak, following["content"] if speak else None,
                                kind=message.get("kind"), notes=list(notes)))
    return points


def sample_conversations(points: list[Point], wanted: int) -> list[Point]:
    """The points of about ``wanted`` points' worth of whole conversations, spread evenly (0: all).

    Whole conversations, so each decision still extends the engine's cached prefix.
    """
    from training.metrics import evenly_spaced

    conversations = sorted({p.conversation for p in points})
    if not wanted or wanted >= len(points) or not conversations:
        return points
    per_conversation = len(points) / len(conversations)
    keep_count = max(1, round(wanted / per_conversation))
    keep = {conversations[i] for i in evenly_spaced(len(conversations), keep_count)}
    return [p for p in points if p.conversation in keep]


def context_lines(point: Point, messages: int = CONTEXT_MESSAGES) -> list[str]:
    """The last ``messages`` turns of a point's window as ``Name: text`` lines."""
    return [f"{t.name}: {t.text}" for t in point.window[-messages:]]
