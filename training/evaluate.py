"""Score the speak/silence decisions of a model on conversations in the data format.

Every user message of every conversation is one decision point: the model sees the
conversation up to and including that message, with the gold assistant turns before
it, and gives its speak probability. The gold label is "speak" when the next message
is an assistant message. The same points are scored for three baselines: always
silent, a naive rule that speaks only when the bot is addressed, and the base model
without the adapter, prompted the way the seed's ChatGPT baseline was. For some speak
points the reply is generated and compared with the reference answer.

Run::

    python -m training.evaluate --data data/dev.jsonl                 # the bot's default model
    python -m training.evaluate --data data/dev.jsonl --adapter out/adapter --json
    python -m training.evaluate --data chats.jsonl --bot-name Sage,sagebot --report out/report

``--json`` prints one JSON object as the last line (the keys are listed in
``evaluate_file``); ``--report DIR`` writes ``report.md`` with its pictures.
The training pipeline calls ``evaluate_file`` directly with its own engine.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from models.names import parse_names, rewrite_bot_names
from models.policy import PROMPTED_BASELINE_SYSTEM
from models.turns import BOT_NAME, SPEAK_THRESHOLD, Turn, from_records
from training.dataset import DatasetError, load_conversations

CURVE_THRESHOLDS = tuple(round(0.05 * step, 2) for step in range(1, 20))  # 0.05 .. 0.95
DEFAULT_REPLIES = 20
CONTEXT_MESSAGES = 6  # messages of context shown with a mistake or a reply sample

# Deliberately naive: any whole-word "assistant" or "bot" counts, "my assistant manager" too.
ADDRESSED = re.compile(rf"(?<!\w)(?:{BOT_NAME}|bot)(?!\w)", re.IGNORECASE)


# -- metric arithmetic (pure) -------------------------------------------------------


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, and 0.0 when there is nothing to divide by."""
    return numerator / denominator if denominator else 0.0


@dataclass(frozen=True)
class Confusion:
    """Counts for the speak class: spoke rightly, spoke wrongly, missed, rightly silent."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @classmethod
    def of(cls, gold: Sequence[bool], predicted: Sequence[bool]) -> Confusion:
        pairs = Counter(zip(gold, predicted, strict=True))  # unequal lengths raise ValueError
        return cls(pairs[True, True], pairs[False, True], pairs[True, False], pairs[False, False])


def scores(confusion: Confusion) -> dict:
    """The speak-class scores of one confusion matrix (every division by zero is 0.0)."""
    c = confusion
    precision, recall = ratio(c.tp, c.tp + c.fp), ratio(c.tp, c.tp + c.fn)
    return {
        "speak_precision": precision,
        "speak_recall": recall,
        "speak_f1": ratio(2 * precision * recall, precision + recall),
        # Mean of the recall of each class; a class with no points counts 0.
        "balanced_accuracy": (recall + ratio(c.tn, c.fp + c.tn)) / 2,
        "false_interruption_rate": ratio(c.fp, c.fp + c.tn),
        "missed_intervention_rate": ratio(c.fn, c.tp + c.fn),
        "decisions": c.tp + c.fp + c.fn + c.tn,
        "confusion": {"tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn},
    }


def score_probabilities(gold: Sequence[bool], probabilities: Sequence[float], threshold: float) -> dict:
    return scores(Confusion.of(gold, [p >= threshold for p in probabilities]))


def threshold_curve(gold: Sequence[bool], probabilities: Sequence[float],
                    thresholds: Sequence[float] = CURVE_THRESHOLDS) -> list[dict]:
    """Precision, recall, F1 and false-interruption rate at each chattiness threshold."""
    keys = ("speak_precision", "speak_recall", "speak_f1", "false_interruption_rate")
    rows = [(t, score_probabilities(gold, probabilities, t)) for t in thresholds]
    return [{"threshold": t, **{k: row[k] for k in keys}} for t, row in rows]


def overlap_f1(reference: str, candidate: str) -> float:
    """Token-overlap F1 of lowercased word tokens (SQuAD style); 1.0 when both are empty."""
    ref, cand = re.findall(r"\w+", reference.lower()), re.findall(r"\w+", candidate.lower())
    if not ref or not cand:
        return float(ref == cand)
    common = sum((Counter(ref) & Counter(cand)).values())
    precision, recall = ratio(common, len(cand)), ratio(common, len(ref))
    return ratio(2 * precision * recall, precision + recall)


def is_addressed(text: str) -> bool:
    """The ``addressed_rule`` baseline: the bot's name, "@assistant" or "bot" as a whole word."""
    return ADDRESSED.search(text) is not None


# -- decision points -----------------------------------------------------------------


@dataclass
class Point:
    """One decision: after user message ``message`` (0-based index) of conversation ``conversation``."""

    conversation: int
    message: int
    window: list[Turn]
    should_speak: bool
    reference: str | None  # the gold answer at a speak point
    p: float = 0.0  # the model's speak probability


def rename_bot(conversations: Sequence[list[dict]], bot_names: Sequence[str]) -> list[list[dict]]:
    """The conversations with the bot's names in user messages rewritten as the bot would."""
    return [
        [{**m, "content": rewrite_bot_names(m["content"], bot_names)} if m["role"] == "user" else m
         for m in conversation]
        for conversation in conversations
    ]


def decision_points(conversations: Sequence[list[dict]]) -> list[Point]:
    points = []
    for c, conversation in enumerate(conversations):
        turns = from_records(conversation)
        for i, message in enumerate(conversation):
            if message["role"] != "user":
                continue
            following = conversation[i + 1] if i + 1 < len(conversation) else None
            speak = following is not None and following["role"] == "assistant"
            points.append(Point(c, i, turns[: i + 1], speak, following["content"] if speak else None))
    return points


def context_lines(point: Point, messages: int = CONTEXT_MESSAGES) -> list[str]:
    """The last ``messages`` turns of a point's window as ``Name: text`` lines."""
    return [f"{t.name}: {t.text}" for t in point.window[-messages:]]


# -- running the model -----------------------------------------------------------------


def evenly_spaced(count: int, wanted: int) -> list[int]:
    """Up to ``wanted`` indices spread over ``range(count)``, first and last included."""
    wanted = max(0, min(wanted, count))
    return sorted({round(k * (count - 1) / max(wanted - 1, 1)) for k in range(wanted)})


def reply_sample(engine, point: Point) -> dict:
    reply = engine.reply(point.window, key=point.conversation)
    return {"conversation": point.conversation + 1, "message": point.message + 1,
            "context": context_lines(point), "reference": point.reference, "reply": reply,
            "overlap_f1": overlap_f1(point.reference or "", reply)}


def run_decisions(engine, points: Sequence[Point], description: str,
                  reply_at: Collection[int] = ()) -> tuple[list[float], float, list[dict]]:
    """Speak probabilities at every point, decision seconds, and reply samples at ``reply_at``.

    Points come in conversation order, so each decision extends the engine's cached
    prefix for its conversation; a finished conversation's cache is dropped (for a
    7B model eight cached windows are gigabytes). Replies share the cache, and their
    time is not decision time.
    """
    from tqdm import tqdm

    probabilities, samples, seconds = [], [], 0.0
    # disable=None: a bar on a terminal, nothing in logs or captured output.
    with tqdm(total=len(points), desc=description, unit="decision", file=sys.stderr, disable=None) as bar:
        for index, point in enumerate(points):
            if index and points[index - 1].conversation != point.conversation:
                engine.forget(points[index - 1].conversation)
            started = time.perf_counter()
            probabilities.append(engine.decide(point.window, key=point.conversation))
            seconds += time.perf_counter() - started
            if index in reply_at:
                samples.append(reply_sample(engine, point))
            bar.update()
    if points:
        engine.forget(points[-1].conversation)
    return probabilities, seconds, samples


@contextlib.contextmanager
def without_adapter(model) -> Iterator[None]:
    """Run the base weights: a peft model with its adapter disabled, a bare model as it is."""
    from peft import PeftModel

    if isinstance(model, PeftModel):
        with model.disable_adapter():
            yield
    else:
        yield


def prompted_baseline(engine, points: Sequence[Point], threshold: float) -> dict:
    """The base model, no adapter, with the seed-style system prompt, on the same points."""
    from models.engine import Engine

    prompted = Engine(engine.model, engine.tokenizer, window_tokens=engine.window_tokens,
                      system=PROMPTED_BASELINE_SYSTEM)
    with without_adapter(engine.model):
        probabilities, seconds, _ = run_decisions(prompted, points, "prompted base")
    gold = [p.should_speak for p in points]
    return {
        **score_probabilities(gold, probabilities, threshold),
        "decisions_per_second": ratio(len(points), seconds),
        "pr_curve": threshold_curve(gold, probabilities),
    }


def rule_baselines(points: Sequence[Point]) -> dict:
    gold = [p.should_speak for p in points]
    addressed = [is_addressed(p.window[-1].text) for p in points]
    return {
        "always_silent": scores(Confusion.of(gold, [False] * len(points))),
        "addressed_rule": scores(Confusion.of(gold, addressed)),
    }


# -- the evaluation ----------------------------------------------------------------------


def evaluate_points(points: Sequence[Point], engine, *, threshold: float = SPEAK_THRESHOLD,
                    baselines: bool = True, replies: int = DEFAULT_REPLIES) -> dict:
    """Score ``engine`` on ``points`` (setting each point's ``p``); the result dict of ``evaluate_file``."""
    speak_indices = [i for i, p in enumerate(points) if p.should_speak]
    reply_at = {speak_indices[k] for k in evenly_spaced(len(speak_indices), replies)}
    probabilities, seconds, samples = run_decisions(engine, points, "model", reply_at)
    for point, p in zip(points, probabilities, strict=True):
        point.p = p
    gold = [p.should_speak for p in points]
    result = {
        "model": engine.describe(),
        "threshold": threshold,
        **score_probabilities(gold, probabilities, threshold),
        "speak_points": len(speak_indices),
        "silent_points": len(points) - len(speak_indices),
        "decisions_per_second": ratio(len(points), seconds),
        "reply_overlap_f1": ratio(sum(s["overlap_f1"] for s in samples), len(samples)) if samples else None,
        "reply_samples": samples,
        "pr_curve": threshold_curve(gold, probabilities),
        "baselines": {},
    }
    if baselines:
        prompted = prompted_baseline(engine, points, threshold)
        result["baselines"] = {**rule_baselines(points), "prompted_base": prompted}
    return result


def evaluate_file(path: str | Path, engine, *, threshold: float = SPEAK_THRESHOLD, bot_names: Sequence[str] = (),
                  baselines: bool = True, replies: int = DEFAULT_REPLIES,
                  report_dir: str | Path | None = None) -> dict:
    """Evaluate ``engine`` on a JSONL file; optionally write the report. Returns the JSON dict.

    Top-level keys: the scores (``speak_precision``, ``speak_recall``, ``speak_f1``,
    ``balanced_accuracy``, ``false_interruption_rate``, ``missed_intervention_rate``,
    ``decisions``, ``confusion``), ``decisions_per_second``, ``reply_overlap_f1`` (None
    without replies), ``reply_samples``, ``pr_curve``, ``baselines`` ({name: scores}),
    and ``data``, ``conversations``, ``model``, ``threshold``, ``report``.
    Raises ``DatasetError`` (``file:line: reason``) for a bad data file.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    conversations = rename_bot(load_conversations(path), parse_names(bot_names))
    points = decision_points(conversations)
    result = {"data": str(path), "conversations": len(conversations),
              **evaluate_points(points, engine, threshold=threshold, baselines=baselines, replies=replies),
              "report": None}
    if report_dir is not None:
        from training.report import write_report

        result["report"] = str(write_report(report_dir, result, points))
    return result


# -- command line -------------------------------------------------------------------------


def build_parser():
    import argparse

    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, metavar="FILE.jsonl", help="conversations, data format")
    parser.add_argument("--adapter", default="auto",
                        help="adapter folder, 'auto' (the shipped adapter, as the bot loads it) or 'none'")
    parser.add_argument("--model", default="embedded", help="base model: 'embedded', a hub id or a folder")
    parser.add_argument("--bot-name", default=None, metavar="NAME[,ALIAS...]",
                        help="names people call the bot in this data; rewritten to 'assistant' first")
    parser.add_argument("--threshold", type=float, default=SPEAK_THRESHOLD, help="speak when p >= this")
    parser.add_argument("--report", default=None, metavar="DIR", help="write report.md and its PNGs here")
    parser.add_argument("--replies", type=int, default=DEFAULT_REPLIES, metavar="N",
                        help="generate replies at up to N speak points and score them (0: none)")
    parser.add_argument("--no-baselines", action="store_true", help="score the model only")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.replies < 0:
        parser.error("--replies must be 0 or more")
    from models import loading
    from models.quiet import quiet_libraries

    quiet_libraries()
    try:
        load_conversations(args.data)  # a bad file fails in a second, not after loading a model
        # Unmerged, so the prompted baseline can switch the adapter off.
        engine = loading.load_engine(args.model, args.adapter, merge_adapter=False)
    except (DatasetError, loading.ModelLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        result = evaluate_file(args.data, engine, threshold=args.threshold,
                               bot_names=parse_names(args.bot_name), baselines=not args.no_baselines,
                               replies=args.replies, report_dir=args.report)
    except (ValueError, OSError) as error:  # DatasetError is a ValueError; OSError: the report folder
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        from training.report import summary

        print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
