"""Label-preserving rewrites of conversations, and how often such a rewrite flips a decision.

A rewrite changes how people write, never what the moment is: speaker names are
swapped for others (consistently, mentions in the text included), a person's
messages may go all-lowercase, lose their question marks or final punctuation,
gain an emoji or a typo. What a label depends on is never touched: the bot's
name (``assistant``, ``@assistant``, ``bot``), words with digits, another bot's
name, and the assistant's replies (their facts are the reference; only the
names they mention follow the swap).

Training rewrites ``augment_share`` of the conversations once, when preparing.
The flip rate measures what augmentation is meant to buy: on dev, the share of
decisions that change when the conversation is rewritten::

    python -m training.augment --adapter models/adapter      # all dev files
    python -m training.augment --data data/dev-voices.jsonl --adapter none --max-points 200
"""

from __future__ import annotations

import random
import re
import sys
from collections.abc import Sequence

from training.dataset import Conversation

NAMES = ("Ana", "Bo", "Chidi", "Dee", "Eitan", "Fatima", "Gus", "Hana", "Ivo", "Jun", "Kemal", "Lena",
         "Mo", "Nia", "Oskar", "Priya", "Quinn", "Rafa", "Sven", "Tomoko", "Uma", "Vik", "Wren", "Yara",
         "zed_99", "kat.m", "BigJoe", "lulu", "ramen_king", "Sol")
EMOJI = ("😂", "🙂", "👍", "lol", "😅", "🔥", "🤔")
PROTECTED = re.compile(r"^@?(assistant|bot)\b|\d", re.IGNORECASE)
WORD = re.compile(r"\S+")
# Each rewrite of a person's message happens with this probability.
LOWERCASE, NO_QUESTION_MARK, NO_FINAL_STOP, ADD_EMOJI, ADD_TYPO = 0.3, 0.3, 0.3, 0.15, 0.25


def augment(conversation: Conversation, rng: random.Random) -> Conversation:
    """One label-preserving rewrite of a conversation (same messages, same order, same labels)."""
    notes, messages = conversation
    # Another bot's name is what makes its message "other_bot": keep it.
    bots = {m["name"] for m in messages if m.get("kind") == "other_bot" or "bot" in m.get("name", "").lower()}
    names = sorted({m["name"] for m in messages if m["role"] == "user"} - bots)
    fresh = [n for n in NAMES if n not in names]
    rng.shuffle(fresh)
    renames = dict(zip(names, fresh, strict=False))
    rewritten = []
    for message in messages:
        if message["role"] != "user":
            # The reply's words are the reference: only the names it mentions change.
            rewritten.append({**message, "content": rename_mentions(message["content"], renames)})
            continue
        text = rename_mentions(message["content"], renames)
        rewritten.append({**message, "name": renames.get(message["name"], message["name"]),
                          "content": restyle(text, rng)})
    return Conversation(notes, rewritten)


def rename_mentions(text: str, renames: dict[str, str]) -> str:
    for old, new in renames.items():
        text = re.sub(rf"(?<!\w){re.escape(old)}(?!\w)", new, text)
    return text


def restyle(text: str, rng: random.Random) -> str:
    words = WORD.findall(text)
    if rng.random() < ADD_TYPO:
        text = add_typo(text, words, rng)
    if rng.random() < LOWERCASE:
        text = " ".join(w if PROTECTED.search(w) else w.lower() for w in text.split(" "))
    if rng.random() < NO_QUESTION_MARK:
        text = text.replace("?", "")
    if rng.random() < NO_FINAL_STOP:
        text = text.rstrip(".!")
    if rng.random() < ADD_EMOJI:
        text = f"{text} {rng.choice(EMOJI)}"
    return text if text.strip() else "ok"


def add_typo(text: str, words: Sequence[str], rng: random.Random) -> str:
    """Swap two neighbouring letters inside one unprotected word of four letters or more."""
    candidates = [w for w in words if len(w) >= 4 and w.isalpha() and not PROTECTED.search(w)]
    if not candidates:
        return text
    word = rng.choice(candidates)
    i = rng.randrange(1, len(word) - 2)
    typo = word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return re.sub(rf"(?<!\w){re.escape(word)}(?!\w)", typo, text, count=1)


def augment_conversations(conversations: Sequence[Conversation], share: float,
                          seed: int = 0) -> list[Conversation]:
    """The conversations with about ``share`` of them replaced by a rewrite (seeded)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"augment_share must be between 0 and 1, got {share}")
    rng = random.Random(seed)
    return [augment(c, rng) if rng.random() < share else c for c in conversations]


def flip_rate(engine, conversations: Sequence[Conversation], threshold: float, seed: int = 0,
              max_points: int = 0) -> dict:
    """Share of decision points whose decision changes under a label-preserving rewrite."""
    from training.evaluate import run_decisions
    from training.metrics import decisions
    from training.points import decision_points, sample_conversations

    rng = random.Random(seed)
    original = sample_conversations(decision_points(conversations), max_points)
    rewritten_conversations = [augment(c, rng) for c in conversations]
    keep = {(p.conversation, p.message) for p in original}
    rewritten = [p for p in decision_points(rewritten_conversations) if (p.conversation, p.message) in keep]
    before, _, _ = run_decisions(engine, original, "original")
    after, _, _ = run_decisions(engine, rewritten, "rewritten")
    flips = sum(a != b for a, b in zip(decisions(before, threshold), decisions(after, threshold), strict=True))
    return {"points": len(original), "flips": flips, "flip_rate": flips / len(original) if original else 0.0,
            "threshold": threshold}


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m training.augment",
                                     description="Measure how often a label-preserving rewrite flips a decision.")
    parser.add_argument("--data", nargs="+", default=None, metavar="FILE.jsonl",
                        help="default: the dev files that exist (training/config.py DEV_FILES)")
    parser.add_argument("--adapter", default="auto", help="adapter folder, 'auto' or 'none'")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--threshold", type=float, default=None, help="default: the adapter's")
    parser.add_argument("--max-points", type=int, default=0, help="about this many points (0: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from models import loading
    from models.threshold import adapter_threshold
    from training.config import DEV_FILES, existing_files
    from training.dataset import DatasetError, load_files

    try:
        conversations = load_files(args.data or existing_files(DEV_FILES, DEV_FILES, named=False))
        engine = loading.load_engine(args.model, args.adapter)
    except (DatasetError, loading.ModelLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    threshold = args.threshold if args.threshold is not None else adapter_threshold(engine.describe()["adapter"])
    result = flip_rate(engine, conversations, threshold, seed=args.seed, max_points=args.max_points)
    print(f"flip rate {result['flip_rate']:.1%}: {result['flips']} of {result['points']} decisions changed "
          f"under a label-preserving rewrite (threshold {threshold:.2f})")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
