"""Metric arithmetic of the speak/silence evaluation: pure functions, no model.

Every decision goes through ``models.threshold.should_speak``, the one comparison
the bot uses too. ``best_threshold`` reads the adapter's threshold off dev;
``kind_errors`` gives the error rate per kind of moment (the ``kind`` labels of
data/README.md).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from models.threshold import should_speak

CURVE_THRESHOLDS = tuple(round(0.05 * step, 2) for step in range(1, 20))  # 0.05 .. 0.95
# The share of silent moments a chosen threshold may interrupt (issue: at most 4 %).
MAX_FALSE_INTERRUPTION_RATE = 0.04
FINE_THRESHOLDS = tuple(round(0.01 * step, 2) for step in range(5, 96))  # 0.05 .. 0.95
# How best_threshold chose, in words (stored beside an adapter with its threshold).
THRESHOLD_RULE = (f"fewest misses with at most {MAX_FALSE_INTERRUPTION_RATE:.0%} false interruptions, "
                  "in 0.01 steps (training.metrics.best_threshold)")


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, and 0.0 when there is nothing to divide by."""
    return numerator / denominator if denominator else 0.0


def evenly_spaced(count: int, wanted: int) -> list[int]:
    """Up to ``wanted`` indices spread over ``range(count)``, first and last included."""
    wanted = max(0, min(wanted, count))
    return sorted({round(k * (count - 1) / max(wanted - 1, 1)) for k in range(wanted)})


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


def decisions(probabilities: Sequence[float], threshold: float) -> list[bool]:
    return [should_speak(p, threshold) for p in probabilities]


def score_probabilities(gold: Sequence[bool], probabilities: Sequence[float], threshold: float) -> dict:
    return scores(Confusion.of(gold, decisions(probabilities, threshold)))


def threshold_curve(gold: Sequence[bool], probabilities: Sequence[float],
                    thresholds: Sequence[float] = CURVE_THRESHOLDS) -> list[dict]:
    """Precision, recall, F1 and false-interruption rate at each chattiness threshold."""
    keys = ("speak_precision", "speak_recall", "speak_f1", "false_interruption_rate")
    rows = [(t, score_probabilities(gold, probabilities, t)) for t in thresholds]
    return [{"threshold": t, **{k: row[k] for k in keys}} for t, row in rows]


def best_threshold(gold: Sequence[bool], probabilities: Sequence[float],
                   thresholds: Sequence[float] = FINE_THRESHOLDS,
                   max_false_interruptions: float = MAX_FALSE_INTERRUPTION_RATE) -> float:
    """The threshold that misses the fewest speak points within an interruption budget.

    A false interruption is the failure people notice first (silence is the normal
    case), so the threshold may interrupt at most ``max_false_interruptions`` of
    the silent points, and of those thresholds the one that misses the fewest
    moments to speak wins; of equally good ones the quietest. Balanced accuracy
    alone weighs the two error rates the same and, with silence this common,
    chose thresholds that interrupted one silent moment in seven. When no
    threshold keeps the budget, the highest balanced accuracy.
    """
    rows = {t: score_probabilities(gold, probabilities, t) for t in thresholds}
    within = [t for t in thresholds if rows[t]["false_interruption_rate"] <= max_false_interruptions]
    if within:
        return max(within, key=lambda t: (-rows[t]["missed_intervention_rate"], t))
    return max(thresholds, key=lambda t: (rows[t]["balanced_accuracy"], t))


def kind_errors(kinds: Sequence[str | None], gold: Sequence[bool], probabilities: Sequence[float],
                threshold: float) -> dict:
    """Per labelled kind of moment: points, wrong decisions and their rate (unlabelled points skipped)."""
    table: dict[str, dict] = {}
    for kind, speak, spoke in zip(kinds, gold, decisions(probabilities, threshold), strict=True):
        if kind is None:
            continue
        row = table.setdefault(kind, {"points": 0, "errors": 0, "speak_points": 0})
        row["points"] += 1
        row["errors"] += speak != spoke
        row["speak_points"] += speak
    for row in table.values():
        row["error_rate"] = ratio(row["errors"], row["points"])
    return dict(sorted(table.items(), key=lambda item: -item[1]["error_rate"]))


def overlap_f1(reference: str, candidate: str) -> float:
    """Token-overlap F1 of lowercased word tokens (SQuAD style); 1.0 when both are empty."""
    ref, cand = re.findall(r"\w+", reference.lower()), re.findall(r"\w+", candidate.lower())
    if not ref or not cand:
        return float(ref == cand)
    common = sum((Counter(ref) & Counter(cand)).values())
    precision, recall = ratio(common, len(cand)), ratio(common, len(ref))
    return ratio(2 * precision * recall, precision + recall)
