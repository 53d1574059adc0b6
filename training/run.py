"""The whole retraining pipeline: check data -> prepare -> train -> threshold off dev -> evaluate -> save.

    python -m training.run                                  # CPU default -> models/adapter
    python -m training.run --config smoke                   # a few steps and a small dev sample (< 2 min)
    python -m training.run --config training/configs/openchat-3.5.yaml   # QLoRA on a GPU
    python -m training.run --adapter_dir /models/adapter    # save the adapter elsewhere
    python -m training.run --help                           # every setting (TRL's and ours)

Settings come from a YAML file (``--config``, see training/config.py) and the
command line. An interrupted run resumes from its last checkpoint in
``output_dir`` (``--restart`` starts over). The adapter folder gets the adapter
weights, the tokenizer with its chat template, the speak threshold read off the
dev files (``chimein.json``, read back by the bot), a model card (README.md) and
the dev report.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from pathlib import Path

from training.config import RunConfig, parse_config

log = logging.getLogger("training.run")
CARD_SETTINGS = ("train_data", "dev_data", "decision_weight", "augment_share", "model_name_or_path",
                 "lora_r", "lora_alpha", "lora_dropout", "learning_rate", "lr_scheduler_type", "warmup_steps",
                 "per_device_train_batch_size", "gradient_accumulation_steps", "num_train_epochs",
                 "max_steps", "max_length", "max_grad_norm", "seed")


def run(config: RunConfig) -> dict:
    """Run the pipeline for one config; return the dev scores plus ``train_losses``."""
    from models.template import ChatFormat
    from training.augment import augment_conversations
    from training.dataset import dataset_stats, load_files
    from training.finetune import build_trainer, check_hardware, last_checkpoint, load_base_for_training
    from training.prepare import encode_dataset, trained_text

    started = time.monotonic()
    script, training = config.script, config.training
    check_hardware(config)
    # Every file is read and checked before a model loads: a bad line fails in seconds.
    train, dev = load_files(script.train_data), load_files(script.dev_data)
    stats = {"train": dataset_stats(train), "dev": dataset_stats(dev)}
    log.info("data: %s", json.dumps(stats))

    model, tokenizer = load_base_for_training(config)
    fmt = ChatFormat(tokenizer, max_turn_tokens=training.max_length // 4)
    train = augment_conversations(train, script.augment_share, seed=training.seed)
    examples = encode_dataset(fmt, train, training.max_length, script.decision_weight)
    log.info("prepared %d examples (%d tokens) from %d conversations; first trained text: %r",
             len(examples), sum(len(e["input_ids"]) for e in examples), len(train),
             trained_text(tokenizer, examples[0])[:200])

    if script.restart:
        shutil.rmtree(training.output_dir, ignore_errors=True)
    trainer = build_trainer(config, model, tokenizer, examples)
    resume = last_checkpoint(config)
    if resume:
        log.info("resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=resume)
    adapter_dir = Path(script.adapter_dir)
    trainer.save_model(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    train_minutes = (time.monotonic() - started) / 60
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    tokens_per_second = trainer.state.num_input_tokens_seen / max(result.metrics["train_runtime"], 1e-9)
    log.info("trained in %.1f min (%.0f real tokens/s in the trainer), final train loss %.4f; adapter saved to %s",
             train_minutes, tokens_per_second, result.training_loss, adapter_dir)

    del trainer, model  # free the training copy before loading what ships
    training_result = {"train_losses": losses, "train_minutes": train_minutes,
                       "train_tokens_per_second": tokens_per_second, "train_loss": result.training_loss}
    scores = evaluate_saved(config, adapter_dir)
    write_model_card(config, adapter_dir, stats, scores, training_result)
    return {**scores, **training_result}


def evaluate_saved(config: RunConfig, adapter_dir: Path) -> dict:
    """Score the adapter as the bot will load it; store the threshold read off dev beside it.

    Also, when the config asks: the answers file (``answers``: its result dict) and the
    flip rate under label-preserving rewrites (``flip``); both are written to the
    report folder as JSON.
    """
    from models.loading import load_engine
    from models.threshold import write_adapter_threshold
    from training.evaluate import evaluate_files
    from training.metrics import THRESHOLD_RULE

    script = config.script
    report = adapter_dir / "report"  # the dev report goes here first, then the JSON files
    # Unmerged, so the prompted baseline can switch the adapter off; the scores
    # match the merged engine the bot runs up to float rounding.
    engine = load_engine(config.model.model_name_or_path, adapter_dir,
                         window_tokens=config.training.max_length, merge_adapter=False)
    scores = evaluate_files(script.dev_data, engine, threshold=None, baselines=script.eval_baselines,
                            replies=script.eval_replies, max_points=script.eval_points,
                            report_dir=report)
    keys = ("speak_f1", "false_interruption_rate", "missed_intervention_rate", "balanced_accuracy")
    write_adapter_threshold(adapter_dir, scores["threshold"], read_off=scores["data"], rule=THRESHOLD_RULE,
                            dev_scores={k: round(scores[k], 4) for k in keys})
    log.info("speak threshold %.2f read off %s (%d decisions); stored in %s", scores["threshold"],
             scores["data"], scores["decisions"], adapter_dir)
    if script.eval_flip_points:
        from training.augment import flip_rate
        from training.dataset import load_files

        scores["flip"] = flip_rate(engine, load_files(script.dev_data), scores["threshold"],
                                   seed=config.training.seed, max_points=script.eval_flip_points)
        (report / "flip_rate.json").write_text(json.dumps(scores["flip"], indent=1) + "\n")
        log.info("flip rate %.1f%% over %d dev points", 100 * scores["flip"]["flip_rate"], scores["flip"]["points"])
    if script.eval_answers:
        from training.answers import evaluate_answers

        scores["answers"] = evaluate_answers(script.eval_answers, engine, baselines=script.eval_baselines,
                                             replies_out=report / "answers_replies.jsonl")
        (report / "answers.json").write_text(json.dumps(scores["answers"], indent=1) + "\n")
        log.info("answer accuracy %.3f on %s", scores["answers"]["answer_accuracy"], script.eval_answers)
    return scores


def write_model_card(config: RunConfig, adapter_dir: Path, stats: dict, scores: dict, trained: dict) -> None:
    from training.report import per_file_section, scores_table

    values = {**vars(config.script), **vars(config.model), **config.training.to_dict()}
    settings = "\n".join(f"- `{k}`: {values[k]!r}" for k in CARD_SETTINGS if k in values)
    base = config.model.model_name_or_path
    card = f"""# Chime In adapter: {config.name}

A LoRA adapter that teaches `{base}` when to speak in a group chat
(`(silence)` or `(response) text` after every message; see docs/policy.md in the Chime In repository).
Load it with `python -m bot chat --adapter {adapter_dir}` or `CHIMEIN_ADAPTER={adapter_dir}`.

## Data

- train: {", ".join(f"`{f}`" for f in config.script.train_data)}: {json.dumps(stats["train"])}
- dev: {", ".join(f"`{f}`" for f in config.script.dev_data)}: {json.dumps(stats["dev"])}

## Dev scores (speaks when p >= {scores["threshold"]:.2f}, {scores["decisions"]} decision points)

The threshold was read off these dev files at the best balance of misses and false
interruptions and is stored in `chimein.json`, where the bot reads it; the scores at it
flatter the adapter somewhat for that reason.

{chr(10).join(scores_table(scores, "this adapter"))}

{chr(10).join(per_file_section(scores))}{_flip_section(scores)}
Reply overlap F1 with the reference answers: {scores.get("reply_overlap_f1") or float("nan"):.3f}.
The full report with the confusion matrix, precision/recall curve, errors by kind of moment
and worst mistakes is in [report/](report/).

{_answers_section(scores)}## Training

Final train loss {trained["train_loss"]:.4f}; wall time {trained["train_minutes"]:.1f} minutes (data check to
saved adapter); {trained["train_tokens_per_second"]:.0f} real (non-padding) tokens per second in the trainer.

{settings}

## What was tried

{config.script.run_notes or "(nothing recorded)"}
"""
    (adapter_dir / "README.md").write_text(card)


def _flip_section(scores: dict) -> str:
    flip = scores.get("flip")
    if not flip:
        return ""
    return (f"\nFlip rate: {flip['flips']} of {flip['points']} dev decisions ({flip['flip_rate']:.1%}) change "
            "when the conversation is rewritten without changing its meaning (names, casing, punctuation, "
            "typos; `python -m training.augment`).\n")


def _answers_section(scores: dict) -> str:
    answers = scores.get("answers")
    if not answers:
        return ""
    from training.answers import table

    return (f"## Answers\n\nForced replies (as after an @mention) to the {answers['items']} questions of "
            f"`{answers['data']}`, scored by `python -m training.evaluate --answers` (training/answers.py); "
            "*plain base*: the bare base model asked the same question plainly in its own chat template.\n\n"
            f"```\n{table(answers)}\n```\n\n")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from models.loading import ModelLoadError
    from training.dataset import DatasetError
    from training.finetune import NoGpuError

    try:
        config = parse_config(argv)
        scores = run(config)
    except (NoGpuError, DatasetError, ModelLoadError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in scores.items() if not isinstance(v, (dict, list))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
