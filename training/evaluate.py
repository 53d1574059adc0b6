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
import itertools
import json
import re
import sys
import time
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path

from models.names import parse_names
from models.policy import PROMPTED_BASELINE_SYSTEM
from models.threshold import adapter_threshold
from models.turns import BOT_NAME
from training.dataset import DatasetError, load_files
from training.metrics import (
    Confusion,
    best_threshold,
    evenly_spaced,
    kind_errors,
    overlap_f1,
    ratio,
    score_probabilities,
    scores,
    threshold_curve,
)
from training.points import Point, context_lines, decision_points, rename_bot, sample_conversations

DEFAULT_REPLIES = 20

# Deliberately naive: any whole-word "assistant" or "bot" counts, "my assistant manager" too.
ADDRESSED = re.compile(rf"(?<!\w)(?:{BOT_NAME}|bot)(?!\w)", re.IGNORECASE)


def is_addressed(text: str) -> bool:
    """The ``addressed_rule`` baseline: the bot's name, "@assistant" or "bot" as a whole word."""
    return ADDRESSED.search(text) is not None


# -- running the model -----------------------------------------------------------------


def reply_sample(engine, point: Point) -> dict:
    reply = engine.reply(point.window, key=point.conversation, notes=point.notes)
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
            probabilities.append(engine.decide(point.window, key=point.conversation, notes=point.notes))
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


def evaluate_points(points: Sequence[Point], engine, *, threshold: float | None = None,
                    baselines: bool = True, replies: int = DEFAULT_REPLIES) -> dict:
    """Score ``engine`` on ``points`` (setting each point's ``p``); the result dict of ``evaluate_files``.

    ``threshold=None`` reads the threshold off these points (``metrics.best_threshold``),
    as training does on dev; ``threshold_source`` says which it was.
    """
    speak_indices = [i for i, p in enumerate(points) if p.should_speak]
    reply_at = {speak_indices[k] for k in evenly_spaced(len(speak_indices), replies)}
    probabilities, seconds, samples = run_decisions(engine, points, "model", reply_at)
    for point, p in zip(points, probabilities, strict=True):
        point.p = p
    gold = [p.should_speak for p in points]
    source = "given" if threshold is not None else "read off this data"
    if threshold is None:
        threshold = best_threshold(gold, probabilities)
    result = {
        "model": engine.describe(),
        "threshold": threshold,
        "threshold_source": source,
        **score_probabilities(gold, probabilities, threshold),
        "speak_points": len(speak_indices),
        "silent_points": len(points) - len(speak_indices),
        "decisions_per_second": ratio(len(points), seconds),
        "reply_overlap_f1": ratio(sum(s["overlap_f1"] for s in samples), len(samples)) if samples else None,
        "reply_samples": samples,
        "pr_curve": threshold_curve(gold, probabilities),
        "kinds": kind_errors([p.kind for p in points], gold, probabilities, threshold),
        "baselines": {},
    }
    if baselines:
        prompted = prompted_baseline(engine, points, threshold)
        result["baselines"] = {**rule_baselines(points), "prompted_base": prompted}
    return result


def evaluate_files(paths: str | Path | Sequence[str | Path], engine, *, threshold: float | None = None,
                   bot_names: Sequence[str] = (), baselines: bool = True, replies: int = DEFAULT_REPLIES,
                   max_points: int = 0, report_dir: str | Path | None = None) -> dict:
    """Evaluate ``engine`` on JSONL files taken together; optionally write the report. Returns the JSON dict.

    Top-level keys: the scores (``speak_precision``, ``speak_recall``, ``speak_f1``,
    ``balanced_accuracy``, ``false_interruption_rate``, ``missed_intervention_rate``,
    ``decisions``, ``confusion``), ``decisions_per_second``, ``reply_overlap_f1`` (None
    without replies), ``reply_samples``, ``pr_curve``, ``kinds`` (per labelled kind:
    ``points``, ``errors``, ``error_rate``), ``baselines`` ({name: scores}), and
    ``data``, ``conversations``, ``model``, ``threshold``, ``threshold_source``, ``report``;
    with several files, ``per_file`` ({path: the scores and ``kinds`` at the same threshold}).
    With replies and data whose reference replies carry a ``fact`` (notes data):
    ``grounded_points``, ``grounded_accuracy_with_notes``,
    ``grounded_accuracy_without_notes``, ``grounded_samples`` (training.grounded).
    ``max_points`` > 0 scores an evenly spread sample of whole conversations.
    Raises ``DatasetError`` (``file:line: reason``) for a bad data file.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    files = [load_files([path]) for path in paths]
    conversations = rename_bot([c for file in files for c in file], parse_names(bot_names))
    points = sample_conversations(decision_points(conversations), max_points)
    result = {"data": ", ".join(map(str, paths)), "conversations": len({p.conversation for p in points}),
              **evaluate_points(points, engine, threshold=threshold, baselines=baselines, replies=replies),
              "report": None}
    if len(paths) > 1:
        result["per_file"] = per_file_scores(paths, [len(file) for file in files], points, result["threshold"])
    if replies:  # conversations whose reference replies name a fact from their notes (docs/notes.md)
        from training.grounded import grounded_accuracy

        result.update(grounded_accuracy(engine, conversations, limit=replies))
    if report_dir is not None:
        from training.report import write_report

        result["report"] = str(write_report(report_dir, result, points))
    return result


evaluate_file = evaluate_files  # one file is a list of one


def per_file_scores(paths: Sequence[str | Path], sizes: Sequence[int], points: Sequence[Point],
                    threshold: float) -> dict:
    """Each file's scores and errors by kind at ``threshold``, from points scored together.

    ``sizes``: conversations per file, in the order the files were concatenated.
    """
    ends = list(itertools.accumulate(sizes))
    table = {}
    for index, path in enumerate(paths):
        start = ends[index - 1] if index else 0
        mine = [p for p in points if start <= p.conversation < ends[index]]
        gold, probabilities = [p.should_speak for p in mine], [p.p for p in mine]
        table[str(path)] = {**score_probabilities(gold, probabilities, threshold),
                            "kinds": kind_errors([p.kind for p in mine], gold, probabilities, threshold)}
    return table


# -- command line -------------------------------------------------------------------------


def build_parser():
    import argparse

    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, nargs="+", metavar="FILE.jsonl",
                        help="conversations in the data format; several files are scored together")
    parser.add_argument("--adapter", default="auto",
                        help="adapter folder, 'auto' (the shipped adapter, as the bot loads it) or 'none'")
    parser.add_argument("--model", default="embedded", help="base model: 'embedded', a hub id or a folder")
    parser.add_argument("--bot-name", default=None, metavar="NAME[,ALIAS...]",
                        help="names people call the bot in this data; rewritten to 'assistant' first")
    parser.add_argument("--threshold", type=float, default=None,
                        help="speak when p >= this (default: the threshold stored with the adapter)")
    parser.add_argument("--report", default=None, metavar="DIR", help="write report.md and its PNGs here")
    parser.add_argument("--replies", type=int, default=DEFAULT_REPLIES, metavar="N",
                        help="generate replies at up to N speak points and score them (0: none)")
    parser.add_argument("--max-points", type=int, default=0, metavar="N",
                        help="score about N decision points of whole conversations, evenly spread (0: all)")
    parser.add_argument("--no-baselines", action="store_true", help="score the model only")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    parser.epilog = ("--answers FILE.jsonl [--replies-out OUT.jsonl]: score forced replies instead "
                     "(see training/answers.py)")
    return parser


def check_args(parser, args) -> None:
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be between 0 and 1, got {args.threshold}")
    if args.replies < 0:
        parser.error("--replies must be 0 or more")


def print_result(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        from training.report import summary

        print(summary(result))


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(arg == "--answers" or arg.startswith("--answers=") for arg in argv):
        from training import answers  # answer evaluation: forced replies scored (training/answers.py)

        return answers.main(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    from models import loading
    from models.library_logs import quiet_libraries

    quiet_libraries()
    try:
        load_files(args.data)  # a bad file fails in a second, not after loading a model
        # Unmerged, so the prompted baseline can switch the adapter off.
        engine = loading.load_engine(args.model, args.adapter, merge_adapter=False)
    except (DatasetError, loading.ModelLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    threshold = args.threshold
    if threshold is None:
        threshold = adapter_threshold(engine.describe().get("adapter"))
    try:
        result = evaluate_files(args.data, engine, threshold=threshold,
                                bot_names=parse_names(args.bot_name), baselines=not args.no_baselines,
                                replies=args.replies, max_points=args.max_points, report_dir=args.report)
    except (ValueError, OSError) as error:  # DatasetError is a ValueError; OSError: the report folder
        print(f"error: {error}", file=sys.stderr)
        return 1
    print_result(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
