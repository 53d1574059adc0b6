"""Training configuration: TRL's own dataclasses plus a few Chime In settings, overridable by YAML.

    python -m training.run --config smoke                 # a name from training/configs
    python -m training.run --config my.yaml --learning_rate 1e-4
    python -m training.run --help                         # every field with its help

Three dataclasses are parsed together by ``trl.TrlParser``: ``ChimeInArguments``
(below: data files, adapter folder, evaluation), ``trl.SFTConfig`` (the trainer:
``learning_rate``, ``num_train_epochs``, ``output_dir`` = checkpoints, ...) and
``trl.ModelConfig`` (base model, LoRA, 4-bit). A YAML file sets the defaults of
any of their fields; the command line overrides the file. An unknown key in a
file is an error (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = "cpu-default"
TRAIN_FILES = ["data/train.jsonl", "data/train-voices.jsonl", "data/train-voices2a.jsonl",
               "data/train-voices2b.jsonl", "data/train-voices3.jsonl", "data/train-notes.jsonl",
               "data/train-answers.jsonl", "data/train-answers2.jsonl", "data/train-calc3.jsonl",
               "data/train-calc4.jsonl", "data/train-bills4.jsonl", "data/train-units4.jsonl",
               "data/train-safety4.jsonl"]
DEV_FILES = ["data/dev.jsonl", "data/dev-voices.jsonl", "data/dev-notes.jsonl"]


@dataclass
class ChimeInArguments:
    """What TRL's dataclasses do not cover: the data, where the adapter goes, the evaluation."""

    train_data: list[str] = field(default_factory=lambda: list(TRAIN_FILES), metadata={
        "help": "training conversations, JSONL files (data/README.md). Of the default list, files that "
                "do not exist yet are skipped with a warning; a file named here must exist."})
    dev_data: list[str] = field(default_factory=lambda: list(DEV_FILES), metadata={
        "help": "held-out conversations scored after training (the threshold is read off them); "
                "missing default files are skipped like train_data's"})
    adapter_dir: str = field(default="models/adapter", metadata={
        "help": "where the finished adapter, tokenizer, threshold, model card and dev report go "
                "(output_dir holds the checkpoints)"})
    requires_gpu: bool = field(default=False, metadata={
        "help": "stop at once when no CUDA GPU is present (7B configs)"})
    restart: bool = field(default=False, metadata={
        "help": "ignore existing checkpoints in output_dir and start over"})
    decision_weight: float = field(default=1.0, metadata={
        "help": "loss weight of the decision marker tokens ((silence)/(response)) relative to reply "
                "tokens; weights are renormalised to mean 1 per example"})
    augment_share: float = field(default=0.0, metadata={
        "help": "share of training conversations replaced by a label-preserving rewrite "
                "(names, casing, punctuation, typos; see training/augment.py), 0 to 1"})
    eval_points: int = field(default=0, metadata={
        "help": "score at most this many dev decision points, evenly spaced (0: all)"})
    eval_baselines: bool = field(default=True, metadata={
        "help": "also score the rule and prompted-base baselines on dev"})
    eval_replies: int = field(default=20, metadata={
        "help": "speak points whose generated reply is compared with the reference"})
    eval_answers: str = field(default="", metadata={
        "help": "answers file (training/answers.py format) whose forced replies are scored after "
                "training, with the plain base model beside them; empty: none"})
    eval_flip_points: int = field(default=0, metadata={
        "help": "dev decision points re-scored under a label-preserving rewrite to count flipped "
                "decisions (training/augment.py); 0: none"})
    run_notes: str = field(default="", metadata={
        "help": "free text for the model card: what was tried and why these settings"})


class RunConfig(NamedTuple):
    script: ChimeInArguments
    training: object  # trl.SFTConfig
    model: object  # trl.ModelConfig

    @property
    def name(self) -> str:
        return self.training.run_name or "run"


def available() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config(value: str | None) -> Path:
    """A config path, or a bare name from training/configs (``smoke``)."""
    if value is None:
        value = DEFAULT_CONFIG
    path = Path(value)
    if path.suffix in (".yaml", ".yml") or path.exists():
        found = path
    else:
        found = CONFIG_DIR / f"{value}.yaml"
    if not found.exists():
        raise FileNotFoundError(f"config file {found} not found (configs: {', '.join(available())})")
    return found


def make_parser():
    from trl import ModelConfig, SFTConfig, TrlParser

    return TrlParser((ChimeInArguments, SFTConfig, ModelConfig), prog="python -m training.run",
                     description="Check data, prepare, train a LoRA adapter, read its threshold off dev, "
                                 "evaluate and save. --config NAME|FILE.yaml sets the defaults "
                                 f"(default {DEFAULT_CONFIG}; configs: {', '.join(available())}).")


def parse_config(argv: list[str] | None = None, parser=None) -> RunConfig:
    """Parse ``--config NAME|FILE`` (default cpu-default) plus command-line overrides."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if "--config" in args:
        index = args.index("--config")
        if index + 1 >= len(args):
            raise ValueError("--config needs a name or a YAML file")
        args[index + 1] = str(resolve_config(args[index + 1]))
    elif not {"-h", "--help"} & set(args):
        args = ["--config", str(resolve_config(None)), *args]
    parser = parser or make_parser()
    import torch

    # Without a GPU, train on the CPU (bf16 autocast where it has AVX512-BF16) unless
    # the file says otherwise; SFTConfig refuses bf16 with neither.
    parser.set_defaults(use_cpu=not torch.cuda.is_available())
    script, training, model = parser.parse_args_and_config(args)
    given = {a.split("=")[0].lstrip("-").replace("-", "_") for a in args if a.startswith("--")}
    script.train_data = existing_files(script.train_data, TRAIN_FILES, "train_data" in given)
    script.dev_data = existing_files(script.dev_data, DEV_FILES, "dev_data" in given)
    if model.lora_target_modules in (["all-linear"], None):
        model.lora_target_modules = "all-linear"  # PEFT's keyword, not a module name
    return RunConfig(script, training, model)


def existing_files(files: list[str], defaults: list[str], named: bool) -> list[str]:
    """The files that exist. A missing default file is skipped with a warning (another
    developer's data may not be there yet); a missing file named on purpose is an error."""
    if isinstance(files, str):
        files = [files]
    kept = []
    for file in files:
        if Path(file).exists():
            kept.append(file)
        elif file in defaults and not named:
            log.warning("skipping %s: it does not exist (yet)", file)
        else:
            raise FileNotFoundError(f"data file {file} does not exist")
    if not kept:
        raise FileNotFoundError(f"none of the data files exist: {', '.join(files)}")
    return kept
