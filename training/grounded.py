"""Grounded-answer accuracy: does the reply carry the fact from the notes, with them and without them?

A conversation with notes (data/README.md) may mark the key fact of a reference
reply: ``{"role": "assistant", "content": "...", "fact": "glaze&fire2024"}``, the
date, number, name or code the reply must copy from a note. At each such point
the model writes its reply twice, once with the conversation's notes in front of
it and once without, and a reply is **grounded** when it contains the fact
(case-insensitive, runs of spaces collapsed). The accuracy with notes says how well
the model copies from them; the one without says how much it could only guess.

``training.evaluate`` adds these numbers next to the decision scores; on its own::

    python -m training.grounded --data data/dev-notes.jsonl [--adapter DIR]
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from models.turns import Turn, from_records

GROUNDED_KEYS = ("grounded_points", "grounded_accuracy_with_notes", "grounded_accuracy_without_notes")


@dataclass(frozen=True)
class FactPoint:
    """A speak point whose reference reply carries a key fact from the notes."""

    conversation: int
    message: int  # index of the reference reply in the conversation
    window: list[Turn]
    notes: list[str]
    fact: str
    reference: str


def _squeezed(text: str) -> str:
    return " ".join(text.lower().split())


def is_grounded(reply: str, fact: str) -> bool:
    """True when ``reply`` contains ``fact`` (case-insensitive, whitespace runs collapsed)."""
    return _squeezed(fact) in _squeezed(reply)


def fact_points(conversations: Iterable[tuple[Sequence[str], Sequence[dict]]]) -> list[FactPoint]:
    """Every assistant message with a ``fact``, as (window up to the asking message, notes, fact)."""
    points = []
    for c, (notes, messages) in enumerate(conversations):
        turns = from_records(messages)
        for i, message in enumerate(messages):
            fact = message.get("fact") if message["role"] == "assistant" else None
            if isinstance(fact, str) and fact.strip():
                points.append(FactPoint(c, i, turns[:i], list(notes), fact, message["content"]))
    return points


def grounded_accuracy(engine, conversations: Iterable[tuple[Sequence[str], Sequence[dict]]],
                      limit: int = 0) -> dict:
    """Replies with and without the notes at the fact points; the two accuracies and the samples.

    ``limit`` > 0 scores at most that many fact points, spread evenly. Empty (``{}``)
    when no reference reply carries a fact, so data without facts adds no keys.
    Each reply runs on a fresh cache entry that is dropped afterwards.
    """
    points = fact_points(conversations)
    if limit and len(points) > limit:
        from training.metrics import evenly_spaced

        points = [points[i] for i in evenly_spaced(len(points), limit)]
    if not points:
        return {}
    samples = []
    for point in points:
        key = ("grounded", point.conversation, point.message)
        with_notes = engine.reply(point.window, key=key, notes=point.notes or None)
        without_notes = engine.reply(point.window, key=key)
        engine.forget(key)
        samples.append({"conversation": point.conversation + 1, "message": point.message + 1,
                        "fact": point.fact, "reference": point.reference,
                        "reply_with_notes": with_notes, "grounded_with_notes": is_grounded(with_notes, point.fact),
                        "reply_without_notes": without_notes,
                        "grounded_without_notes": is_grounded(without_notes, point.fact)})
    count = len(samples)
    return {
        "grounded_points": count,
        "grounded_accuracy_with_notes": sum(s["grounded_with_notes"] for s in samples) / count,
        "grounded_accuracy_without_notes": sum(s["grounded_without_notes"] for s in samples) / count,
        "grounded_samples": samples,
    }


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m training.grounded", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, metavar="FILE.jsonl", help="conversations with notes and facts")
    parser.add_argument("--adapter", default="auto", help="adapter folder, 'auto' or 'none'")
    parser.add_argument("--model", default="embedded", help="base model: 'embedded', a hub id or a folder")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    from models import loading
    from models.library_logs import quiet_libraries
    from training.dataset import DatasetError, load_conversations

    quiet_libraries()
    try:
        conversations = load_conversations(args.data)
        engine = loading.load_engine(args.model, args.adapter)
    except (DatasetError, loading.ModelLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    result = grounded_accuracy(engine, conversations)
    if args.json:
        print(json.dumps(result))
    elif not result:
        print("no reference reply in this file carries a fact")
    else:
        for sample in result["grounded_samples"]:
            mark = "ok  " if sample["grounded_with_notes"] else "MISS"
            print(f"{mark} {sample['fact']!r}: {sample['reply_with_notes']}")
        print(f"grounded answers: {result['grounded_accuracy_with_notes']:.1%} with notes, "
              f"{result['grounded_accuracy_without_notes']:.1%} without ({result['grounded_points']} points)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
