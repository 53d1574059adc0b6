"""The evaluation as people read it: a text table for the terminal, a Markdown page with pictures.

``write_report(folder, result, points)`` writes ``report.md``, ``confusion_matrix.png``
and ``threshold_curve.png`` into the folder; ``training.evaluate --report DIR`` calls
it. ``result`` is the dict ``training.evaluate.evaluate_file`` returns, ``points`` its
decision points with the model's probabilities filled in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from models.threshold import should_speak
from training.points import context_lines

METRIC_KEYS = (
    "speak_precision", "speak_recall", "speak_f1", "balanced_accuracy",
    "false_interruption_rate", "missed_intervention_rate", "decisions",
)
METRIC_LABELS = ("precision", "recall", "F1", "bal. acc.", "false int.", "missed", "decisions")
WORST_MISTAKES = 10
WORST_PER_KIND = 3
CONFUSION_PNG = "confusion_matrix.png"
CURVE_PNG = "threshold_curve.png"


def _cell(row: dict, key: str) -> str:
    return str(row[key]) if key == "decisions" else f"{row[key]:.3f}"


def summary(result: dict) -> str:
    """A plain-text table of the model's scores against the baselines, for the terminal."""
    rows = [("model", result), *result["baselines"].items()]
    lines = [f"{'':16}" + "".join(f"{label:>11}" for label in METRIC_LABELS)]
    lines += [f"{name:16}" + "".join(f"{_cell(row, k):>11}" for k in METRIC_KEYS) for name, row in rows]
    lines.append(f"decisions per second: {result['decisions_per_second']:.1f}")
    if result["reply_overlap_f1"] is not None:
        lines.append(f"reply overlap F1: {result['reply_overlap_f1']:.3f} "
                     f"over {len(result['reply_samples'])} replies")
    if result.get("grounded_points"):
        lines.append(f"grounded answers (reply contains the note's fact): "
                     f"{result['grounded_accuracy_with_notes']:.1%} with notes, "
                     f"{result['grounded_accuracy_without_notes']:.1%} without, "
                     f"over {result['grounded_points']} replies")
    if result.get("report"):
        lines.append(f"report: {result['report']}")
    return "\n".join(lines)


# -- pictures ---------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(confusion: dict, title: str, path: Path) -> None:
    plt = _pyplot()
    cells = [[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]]
    figure, axes = plt.subplots(figsize=(4.2, 3.6), dpi=120)
    axes.imshow(cells, cmap="Blues")
    brightest = max(max(row) for row in cells) or 1
    for i in range(2):
        for j in range(2):
            colour = "white" if cells[i][j] > brightest / 2 else "black"
            axes.text(j, i, str(cells[i][j]), ha="center", va="center", fontsize=14, color=colour)
    axes.set_xticks([0, 1], ["silent", "speak"])
    axes.set_yticks([0, 1], ["silent", "speak"])
    axes.set_xlabel("model")
    axes.set_ylabel("reference")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_threshold_curve(result: dict, path: Path) -> None:
    """Precision and recall of the speak class against the chattiness threshold."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    curves = [("model", result["pr_curve"], "-")]
    prompted = result["baselines"].get("prompted_base")
    if prompted:
        curves.append(("prompted base", prompted["pr_curve"], ":"))
    for name, curve, style in curves:
        thresholds = [row["threshold"] for row in curve]
        axes.plot(thresholds, [row["speak_precision"] for row in curve], style, color="tab:blue",
                  label=f"{name}: precision")
        axes.plot(thresholds, [row["speak_recall"] for row in curve], style, color="tab:orange",
                  label=f"{name}: recall")
    axes.axvline(result["threshold"], color="grey", linestyle="--",
                 label=f"threshold {result['threshold']:.2f}")
    axes.set_xlim(0, 1)
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("speak when p ≥ threshold")
    axes.set_ylabel("speak class")
    axes.set_title("Precision and recall over the chattiness threshold")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="best", framealpha=0.9)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


# -- the page ---------------------------------------------------------------------------


def _code_block(lines: Sequence[str]) -> list[str]:
    # A fence inside a message would end the block early.
    return ["```text", *(line.replace("```", "'''") for line in lines), "```"]


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split()) or "(empty)"


def scores_table(result: dict, model_label: str = "**model**") -> list[str]:
    """The Markdown score table of the model and its baselines (the report's and the model card's)."""
    header = "| | " + " | ".join(METRIC_LABELS) + " |"
    rule = "|---" * (len(METRIC_LABELS) + 1) + "|"
    rows = [(model_label, result), *((f"{name}", row) for name, row in result["baselines"].items())]
    return [header, rule, *("| " + name + " | " + " | ".join(_cell(row, k) for k in METRIC_KEYS) + " |"
                            for name, row in rows)]


def per_file_section(result: dict) -> list[str]:
    """Each file's scores at the shared threshold (Markdown lines), or nothing for one file."""
    rows = result.get("per_file") or {}
    if not rows:
        return []
    header = "| file | " + " | ".join(METRIC_LABELS) + " |"
    rule = "|---" * (len(METRIC_LABELS) + 1) + "|"
    return ["Each file at the same threshold:", "", header, rule,
            *(f"| `{path}` | " + " | ".join(_cell(row, k) for k in METRIC_KEYS) + " |" for path, row in rows.items()),
            ""]


def curve_table(result: dict) -> list[str]:
    lines = ["| threshold | precision | recall | F1 | false interruptions |", "|---|---|---|---|---|"]
    for row in result["pr_curve"]:
        mark = " ◀" if abs(row["threshold"] - result["threshold"]) < 1e-9 else ""
        lines.append(f"| {row['threshold']:.2f}{mark} | {row['speak_precision']:.3f} | "
                     f"{row['speak_recall']:.3f} | {row['speak_f1']:.3f} | "
                     f"{row['false_interruption_rate']:.3f} |")
    return lines


def mistakes_section(title: str, explanation: str, points: Sequence, level: str = "##") -> list[str]:
    lines = [f"{level} {title}", "", explanation, ""]
    if not points:
        return [*lines, "None.", ""]
    for point in points:
        lines += [f"**Conversation {point.conversation + 1}, message {point.message + 1}**: "
                  f"p(speak) = {point.p:.3g}", "", *_code_block(context_lines(point))]
        if point.reference is not None:
            lines.append(f"Reference answer: {_one_line(point.reference)}")
        lines.append("")
    return lines


def kinds_section(result: dict, points: Sequence) -> list[str]:
    """Error rate per labelled kind of moment, with the worst examples of each."""
    lines = ["## Errors by kind of moment", ""]
    kinds = result.get("kinds") or {}
    if not kinds:
        return [*lines, "No decision point in this data carries a `kind` label.", ""]
    lines += ["Labelled decision points by kind (data/README.md), worst first. An error is speaking "
              "at a silent point or staying silent at a speak point.", "",
              "| kind | points | speak points | errors | error rate |", "|---|---|---|---|---|"]
    lines += [f"| {kind} | {row['points']} | {row['speak_points']} | {row['errors']} | {row['error_rate']:.1%} |"
              for kind, row in kinds.items()]
    lines.append("")
    threshold = result["threshold"]
    for kind, row in kinds.items():
        wrong = [p for p in points if p.kind == kind and should_speak(p.p, threshold) != p.should_speak]
        if not wrong:
            continue
        # Most confidently wrong first: the highest p at silent points, the lowest at speak points.
        wrong.sort(key=lambda p: p.p if p.should_speak else -p.p)
        lines += mistakes_section(f"Worst errors: {kind}", f"{row['errors']} of {row['points']} wrong.",
                                  wrong[:WORST_PER_KIND], level="###")
    return lines


def replies_section(result: dict) -> list[str]:
    samples = result["reply_samples"]
    lines = ["## Replies", ""]
    if not samples:
        return [*lines, "No replies were generated (`--replies 0`).", ""]
    lines += [f"Mean token-overlap F1 with the reference answer: **{result['reply_overlap_f1']:.3f}** "
              f"over {len(samples)} speak points (the reply is generated there whatever the "
              "decision said, as after an @mention).", ""]
    for sample in samples:
        lines += [f"**Conversation {sample['conversation']}, message {sample['message']}**: "
                  f"overlap F1 {sample['overlap_f1']:.2f}", "", *_code_block(sample["context"]),
                  f"- Reference: {_one_line(sample['reference'])}",
                  f"- Model: {_one_line(sample['reply'])}", ""]
    return lines


def render_markdown(result: dict, points: Sequence) -> str:
    threshold = result["threshold"]
    false_interruptions = sorted((p for p in points if not p.should_speak and should_speak(p.p, threshold)),
                                 key=lambda p: -p.p)[:WORST_MISTAKES]
    misses = sorted((p for p in points if p.should_speak and not should_speak(p.p, threshold)),
                    key=lambda p: p.p)[:WORST_MISTAKES]
    model = result["model"]
    lines = [
        "# Chime In: speak/silence evaluation", "",
        f"Data `{result['data']}`: {result['conversations']} conversations, {result['decisions']} "
        f"decisions ({result['speak_points']} speak, {result['silent_points']} silent). "
        f"Model `{model.get('model')}`, adapter `{model.get('adapter')}`, "
        f"{model.get('device')} {model.get('dtype')}. Speaks when p ≥ {threshold:.2f}; "
        f"{result['decisions_per_second']:.1f} decisions per second.", "",
        "## Scores (speak class)", "", *scores_table(result), "",
        "*false int.*: spoke where it should stay silent, over the silent points. "
        "*missed*: silent where it should speak, over the speak points.", "",
        *per_file_section(result),
        f"![confusion matrix]({CONFUSION_PNG})", "",
        "## Chattiness threshold", "",
        f"![precision and recall over the threshold]({CURVE_PNG})", "", *curve_table(result), "",
        *mistakes_section("Worst false interruptions",
                          "Silent points where the model was most sure it should speak.",
                          false_interruptions),
        *mistakes_section("Worst misses",
                          "Speak points where the model was most sure it should stay silent.", misses),
        *kinds_section(result, points),
        *replies_section(result),
    ]
    return "\n".join(lines)


def write_report(folder: str | Path, result: dict, points: Sequence) -> Path:
    """Write ``report.md`` and its two PNG files into ``folder``; return the page's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    plot_confusion(result["confusion"], f"Decisions at threshold {result['threshold']:.2f}",
                   folder / CONFUSION_PNG)
    plot_threshold_curve(result, folder / CURVE_PNG)
    page = folder / "report.md"
    page.write_text(render_markdown(result, points) + "\n", encoding="utf-8")
    return page
