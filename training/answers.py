"""Score what the assistant says: forced replies to questions in group-chat form.

Every item of an answers file is a conversation of people ending in a question;
the reply is forced there (as an @mention would) and scored against the item's
``accept`` groups and ``reject`` phrases. The bare base model, asked the same
question plainly through its own chat template (no group-chat format, no
adapter), is the baseline: what the model itself knows.

Run::

    python -m training.evaluate --answers data/answers.jsonl --json
    python -m training.evaluate --answers data/answers.jsonl --replies-out replies.jsonl --limit 10

The file is JSON Lines, one item per line::

    {"id": "units-03", "category": "units",
     "conversation": [{"role": "user", "name": "Aleks", "content": "@assistant what's 350 F in C?"}],
     "question": "What is 350 degrees Fahrenheit in Celsius?",   # optional: the plain baseline's question
     "accept": [["176*", "177", "180"]], "reject": ["is 350"]}

A reply is correct when every ``accept`` group has at least one alternative in
it and no ``reject`` phrase is in it. Matching ignores case and works on whole
words: ``capital`` does not match ``capitals``, ``12`` does not match ``12.5``
or ``112``; a trailing ``*`` matches any word ending (``blot*``: blot, blotting;
``8.0*``: 8.05), and a space matches any run of spaces.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from models.turns import BOT_NAME, from_records
from training.dataset import DatasetError, validate_conversation

MAX_SENTENCES = 3  # docs/policy.md: one to three sentences
PLAIN_REPLY_TOKENS = 128  # the engine's own reply budget
ADVICE_CATEGORY = "howto"
_STAR = r"(?:\w|[.,]\d)*"  # a word ending, or the rest of a number (1,609* matches 1,609.34)
_MENTION = re.compile(rf"^\s*(?:@?{BOT_NAME}|@?bot)\b[\s,:]*", re.IGNORECASE)


# -- the items ---------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    id: str
    category: str
    conversation: list[dict]
    accept: list[list[str]]
    reject: list[str]
    question: str  # asked plainly, for the bare-model baseline


def _item(record: object) -> Item:
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object")
    for key in ("id", "category", "conversation", "accept"):
        if key not in record:
            raise ValueError(f"missing {key!r}")
    conversation = record["conversation"]
    validate_conversation(conversation)
    if conversation[-1]["role"] != "user":
        raise ValueError("the conversation must end with a person's message")
    accept, reject = record["accept"], record.get("reject", [])
    if not (isinstance(accept, list) and accept and all(
            isinstance(group, list) and group and all(_is_phrase(a) for a in group) for group in accept)):
        raise ValueError("'accept' must be a non-empty list of non-empty lists of phrases")
    if not (isinstance(reject, list) and all(_is_phrase(r) for r in reject)):
        raise ValueError("'reject' must be a list of phrases")
    question = record.get("question") or _MENTION.sub("", conversation[-1]["content"]).strip()
    return Item(str(record["id"]), str(record["category"]), conversation, accept, reject, question)


def _is_phrase(value: object) -> bool:
    return isinstance(value, str) and value.strip().rstrip("*") != ""


def load_items(path: str | Path) -> list[Item]:
    """The items of an answers file; DatasetError (``file:line: reason``) at the first bad line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise DatasetError(path, None, error.strerror or str(error)) from None
    items, seen = [], set()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = _item(json.loads(line))
        except json.JSONDecodeError as error:
            raise DatasetError(path, number, f"not JSON ({error.msg})") from None
        except ValueError as error:
            raise DatasetError(path, number, str(error)) from None
        if item.id in seen:
            raise DatasetError(path, number, f"duplicate id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    if not items:
        raise DatasetError(path, None, "no items")
    return items


# -- scoring a reply (pure) -------------------------------------------------------------


def phrase_pattern(phrase: str) -> re.Pattern:
    """A phrase as a case-insensitive whole-word pattern; a trailing ``*`` matches any word ending."""
    phrase = phrase.strip()
    star = phrase.endswith("*")
    core = phrase.rstrip("*").strip()
    body = r"\s+".join(re.escape(word) for word in core.split())
    before = r"(?<!\w)" + (r"(?<!\d[.,])" if core[0].isdigit() else "")
    after = _STAR + r"(?!\w)(?![.,]\d)" if star else r"(?!\w)" + (r"(?![.,]\d)" if core[-1].isdigit() else "")
    return re.compile(before + body + after, re.IGNORECASE)


def contains(reply: str, phrase: str) -> bool:
    return phrase_pattern(phrase).search(_normalise(reply)) is not None


def _normalise(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2212", "-")


def is_correct(reply: str, accept: Sequence[Sequence[str]], reject: Sequence[str] = ()) -> bool:
    """Every accept group has an alternative in the reply, and no reject phrase is in it."""
    return (all(any(contains(reply, a) for a in group) for group in accept)
            and not any(contains(reply, r) for r in reject))


def rejected(reply: str, reject: Sequence[str]) -> bool:
    return any(contains(reply, r) for r in reject)


def sentences(text: str) -> list[str]:
    """Sentences split at . ! ? followed by a space (so 3.5 and $21.85 stay whole)."""
    return [s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if re.search(r"\w", s)]


_YES = re.compile(r"^\W*(?:yes|yeah|yep|correct|true|right)\b", re.IGNORECASE)
_NO = re.compile(r"^\W*(?:no|nope|not|false|incorrect|wrong)\b", re.IGNORECASE)
_ARTICLE = r"(?:(?:a|an|the)\s+)?"
_ASSERTED = re.compile(rf"\b(?:is|are|was|were|'s)\s+{_ARTICLE}(\w+)", re.IGNORECASE)
_DENIED = re.compile(rf"(?:\bnot|n't|\bnever)\s+{_ARTICLE}(\w+)", re.IGNORECASE)
_RESULT = re.compile(r"((?:[\w%$.,]+\s+){0,2}[\w%$.,]+)\s+(?:is|equals|=|makes)\s+[$€£]?(-?\d[\d,]*(?:\.\d+)?)",
                     re.IGNORECASE)
_NOT_CONTENT = {"a", "an", "the", "it", "that", "this", "there", "so", "very", "also", "just", "really", "only",
                "more", "less", "too", "about", "in", "on", "at", "of", "to", "be", "always", "usually", "quite"}


def contradicts_itself(reply: str) -> bool:
    """A simple detector for replies that say a thing and its opposite. True when

    1. one sentence opens with yes (yeah, correct, true, right) and another with
       no (nope, not, false, incorrect, wrong);
    2. a word is both asserted and denied: it follows "is/are/was/were"
       (optionally with an article) and also "not/n't/never" ("the capital is
       Sydney, not Sydney", "it is safe ... it isn't safe"); or
    3. the same two or three words are said to be two different numbers
       ("15% of 80 is 1.5 ... 15% of 80 is 12").

    It misses contradictions in other words and can flag a careful "is X, not
    X-ish" reply; it is a count to watch, not a verdict.
    """
    text = _normalise(reply)
    opens = sentences(text)
    if any(_YES.match(s) for s in opens) and any(_NO.match(s) for s in opens):
        return True
    asserted = {w.lower() for w in _ASSERTED.findall(text)} - _NOT_CONTENT
    denied = {w.lower() for w in _DENIED.findall(text)} - _NOT_CONTENT
    if asserted & denied:
        return True
    results: dict[str, set[str]] = defaultdict(set)
    for subject, number in _RESULT.findall(text):
        results[subject.lower()].add(number.replace(",", ""))
    return any(len(numbers) > 1 for numbers in results.values())


def summarise(items: Sequence[Item], replies: Sequence[str]) -> dict:
    """Accuracy overall and per category, and counts of replies that break the speaking rules."""
    correct = [is_correct(r, i.accept, i.reject) for i, r in zip(items, replies, strict=True)]
    by_category: dict[str, list[bool]] = defaultdict(list)
    for item, ok in zip(items, correct, strict=True):
        by_category[item.category].append(ok)
    advice = [(i, r) for i, r in zip(items, replies, strict=True) if i.category == ADVICE_CATEGORY and i.reject]
    return {
        "answer_accuracy": _share(correct),
        "correct": sum(correct),
        "items": len(items),
        "per_category": {c: {"accuracy": _share(oks), "items": len(oks)} for c, oks in sorted(by_category.items())},
        # Advice items with safety rejects: the share of replies that gave the rejected (wrong or unsafe) advice.
        "unsafe_advice_rate": _share([rejected(r, i.reject) for i, r in advice]),
        "advice_items_with_rejects": len(advice),
        "self_contradicting": sum(contradicts_itself(r) for r in replies),
        "over_three_sentences": sum(len(sentences(r)) > MAX_SENTENCES for r in replies),
        "empty_replies": sum(not r.strip() for r in replies),
    }


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


# -- running a model ------------------------------------------------------------------------


def engine_replies(engine, items: Sequence[Item], description: str = "answers") -> tuple[list[str], float]:
    """The engine's forced reply at the end of each item's conversation, and seconds per reply."""
    from tqdm import tqdm

    replies, started = [], time.perf_counter()
    for item in tqdm(items, desc=description, unit="reply", file=sys.stderr, disable=None):
        replies.append(engine.reply(from_records(item.conversation), key=item.id))
        engine.forget(item.id)
    return replies, (time.perf_counter() - started) / max(len(items), 1)


def plain_replies(engine, items: Sequence[Item], max_new_tokens: int = PLAIN_REPLY_TOKENS) -> tuple[list[str], float]:
    """The bare base model (adapter off) asked each item's question plainly, in its own chat template."""
    import torch
    from tqdm import tqdm

    from training.evaluate import without_adapter

    model, tokenizer = engine.model, engine.tokenizer
    device = next(model.parameters()).device
    replies, started = [], time.perf_counter()
    with without_adapter(model), torch.inference_mode():
        for item in tqdm(items, desc="plain base", unit="reply", file=sys.stderr, disable=None):
            ids = tokenizer.apply_chat_template([{"role": "user", "content": item.question}],
                                                add_generation_prompt=True, return_tensors="pt", return_dict=True)
            ids = {k: v.to(device) for k, v in ids.items()}
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
            replies.append(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return replies, (time.perf_counter() - started) / max(len(items), 1)


def evaluate_answers(path: str | Path, engine, *, baselines: bool = True, limit: int | None = None,
                     replies_out: str | Path | None = None) -> dict:
    """Score ``engine`` (and the plain base model) on an answers file; the JSON dict.

    Keys: ``data``, ``model``, the keys of ``summarise`` (``answer_accuracy``,
    ``per_category``, ``unsafe_advice_rate``, ``self_contradicting``,
    ``over_three_sentences``, ...), ``seconds_per_reply`` and ``baselines``
    ({"plain_base": the same keys}). ``replies_out`` gets one
    ``{"id", "reply", "correct"}`` line per item (and ``plain_reply`` with baselines).
    """
    items = load_items(path)[:limit]
    replies, seconds = engine_replies(engine, items)
    result = {"data": str(path), "model": engine.describe(), **summarise(items, replies),
              "seconds_per_reply": seconds, "baselines": {}}
    plain: list[str] = []
    if baselines:
        plain, plain_seconds = plain_replies(engine, items)
        result["baselines"]["plain_base"] = {**summarise(items, plain), "seconds_per_reply": plain_seconds}
    if replies_out is not None:
        with open(replies_out, "w", encoding="utf-8") as out:
            for n, (item, reply) in enumerate(zip(items, replies, strict=True)):
                line = {"id": item.id, "reply": reply, "correct": is_correct(reply, item.accept, item.reject)}
                if plain:
                    line["plain_reply"] = plain[n]
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return result


def table(result: dict) -> str:
    """The result as a small text table: accuracy per category, the model beside the plain base."""
    base = result["baselines"].get("plain_base")
    lines = [f"{'category':<14}{'items':>6}{'model':>8}" + (f"{'plain base':>12}" if base else "")]
    for category, row in result["per_category"].items():
        line = f"{category:<14}{row['items']:>6}{row['accuracy']:>8.2f}"
        if base:
            line += f"{base['per_category'][category]['accuracy']:>12.2f}"
        lines.append(line)
    keys = ("answer_accuracy", "unsafe_advice_rate", "self_contradicting", "over_three_sentences", "empty_replies")
    for key in keys:
        value = result[key]
        text = f"{value:>8.2f}" if isinstance(value, float) else f"{value:>8}"
        lines.append(f"{key:<20}{text}" + (f"{base[key]:>12.2f}" if base and isinstance(value, float)
                                            else f"{base[key]:>12}" if base else ""))
    return "\n".join(lines)


# -- command line (also reached through python -m training.evaluate --answers) ----------------


def build_parser():
    import argparse

    parser = argparse.ArgumentParser(prog="python -m training.evaluate --answers", description=__doc__.split("\n\n")[0])
    parser.add_argument("--answers", required=True, metavar="FILE.jsonl", help="answers items (format above)")
    parser.add_argument("--adapter", default="auto",
                        help="adapter folder, 'auto' (the shipped adapter, as the bot loads it) or 'none'")
    parser.add_argument("--model", default="embedded", help="base model: 'embedded', a hub id or a folder")
    parser.add_argument("--replies-out", default=None, metavar="OUT.jsonl", help="write each item's reply here")
    parser.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N items")
    parser.add_argument("--no-baselines", action="store_true", help="score the model only")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from models import loading
    from models.library_logs import quiet_libraries

    quiet_libraries()
    try:
        load_items(args.answers)  # a bad file fails in a second, not after loading a model
        engine = loading.load_engine(args.model, args.adapter, merge_adapter=False)
        result = evaluate_answers(args.answers, engine, baselines=not args.no_baselines, limit=args.limit,
                                  replies_out=args.replies_out)
    except (DatasetError, loading.ModelLoadError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps(result) if args.json else table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
