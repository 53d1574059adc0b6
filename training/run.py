"""The whole retraining pipeline: check data -> prepare -> train -> evaluate on dev -> save.

    python -m training.run                                  # CPU default -> models/adapter
    python -m training.run --config smoke                   # a few steps, to try the pipeline
    python -m training.run --config training/configs/openchat-3.5.yaml   # QLoRA on a GPU
    python -m training.run --output-dir /models/adapter     # save the adapter elsewhere

An interrupted run resumes from its last checkpoint in the config's work folder
(``--restart`` starts over). The adapter folder gets the adapter weights, the
tokenizer with its chat template, a model card (README.md) and the dev report.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

from training.config import TrainConfig, available, resolve_config

log = logging.getLogger("training.run")


def run(config: TrainConfig, restart: bool = False) -> dict:
    """Run the pipeline for one config and return the dev scores."""
    from models.template import ChatFormat
    from training.dataset import dataset_stats, load_conversations
    from training.finetune import build_trainer, check_hardware, last_checkpoint, load_base_for_training
    from training.prepare import encode_dataset, trained_text

    started = time.monotonic()
    check_hardware(config)
    train, dev = load_conversations(config.train_data), load_conversations(config.dev_data)
    stats = {"train": dataset_stats(train), "dev": dataset_stats(dev)}
    log.info("data: %s", json.dumps(stats))

    model, tokenizer = load_base_for_training(config)
    fmt = ChatFormat(tokenizer, max_turn_tokens=config.max_length // 4)
    examples = encode_dataset(fmt, train, config.max_length)
    log.info("prepared %d examples from %d conversations; first trained text: %r",
             len(examples), len(train), trained_text(tokenizer, examples[0])[:200])

    if restart:
        shutil.rmtree(Path(config.work_dir) / "checkpoints", ignore_errors=True)
    trainer = build_trainer(config, model, tokenizer, examples)
    resume = last_checkpoint(config)
    if resume:
        log.info("resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=resume)
    adapter_dir = Path(config.adapter_dir)
    trainer.save_model(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    train_minutes = (time.monotonic() - started) / 60
    log.info("trained in %.1f min, final train loss %.4f; adapter saved to %s",
             train_minutes, result.training_loss, adapter_dir)

    del trainer, model  # free the training copy before loading what ships
    scores = evaluate_saved(config, adapter_dir)
    write_model_card(config, adapter_dir, stats, scores, result.training_loss, train_minutes)
    return scores


def evaluate_saved(config: TrainConfig, adapter_dir: Path) -> dict:
    """Score the adapter exactly as the bot will load it."""
    from models.loading import load_engine
    from training.evaluate import evaluate_file

    # Unmerged, so the prompted baseline can switch the adapter off; the scores
    # match the merged engine the bot runs up to float rounding.
    engine = load_engine(config.base_model, adapter_dir, window_tokens=config.max_length, merge_adapter=False)
    return evaluate_file(config.dev_data, engine, replies=config.eval_replies, report_dir=adapter_dir / "report")


def write_model_card(config: TrainConfig, adapter_dir: Path, stats: dict, scores: dict,
                     train_loss: float, train_minutes: float) -> None:
    keys = ("speak_f1", "speak_precision", "speak_recall", "balanced_accuracy",
            "false_interruption_rate", "missed_intervention_rate")
    rows = [("this adapter", scores)] + sorted(scores.get("baselines", {}).items())
    table = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    table += [f"| {name} | " + " | ".join(f"{row.get(k, float('nan')):.3f}" for k in keys) + " |"
              for name, row in rows]
    settings = "\n".join(f"- `{k}`: {v!r}" for k, v in config.to_dict().items() if k != "notes")
    card = f"""# Chime In adapter: {config.name}

A LoRA adapter that teaches `{config.base_model}` when to speak in a group chat
(`(silence)` or `(response) text` after every message; see docs/policy.md in the Chime In repository).
Load it with `python -m bot chat --adapter {adapter_dir}` or `CHIMEIN_ADAPTER={adapter_dir}`.

## Data

- train: `{config.train_data}`: {json.dumps(stats["train"])}
- dev: `{config.dev_data}`: {json.dumps(stats["dev"])}

## Dev scores (speaks when p >= {scores.get("threshold", 0.5):.2f}, {scores.get("decisions", 0)} decision points)

{chr(10).join(table)}

Reply overlap F1 with the reference answers: {scores.get("reply_overlap_f1", float("nan")):.3f}.
The full report with the confusion matrix, precision/recall curve and worst mistakes is
in [report/](report/).

## Training

Final train loss {train_loss:.4f}; wall time {train_minutes:.1f} minutes (data check to saved adapter).

{settings}

## What was tried

{config.notes or "(nothing recorded)"}
"""
    (adapter_dir / "README.md").write_text(card)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help=f"YAML file or a name from training/configs ({', '.join(available())})")
    parser.add_argument("--output-dir", help="where to save the adapter (overrides the config's adapter_dir)")
    parser.add_argument("--restart", action="store_true", help="ignore existing checkpoints and start over")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    from models.loading import ModelLoadError
    from training.dataset import DatasetError
    from training.finetune import NoGpuError

    try:
        config = TrainConfig.from_yaml(resolve_config(args.config))
        if args.output_dir:
            config.adapter_dir = args.output_dir
        scores = run(config, restart=args.restart)
    except (NoGpuError, DatasetError, ModelLoadError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in scores.items() if not isinstance(v, (dict, list))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
