"""Training configuration: one dataclass, every field with a help string, overridable by YAML.

    python -m training.run --config training/configs/openchat-3.5.yaml

A YAML file sets any subset of the fields below; an unknown key is an error
(a typo must not silently fall back to a default).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "cpu-default.yaml"


def _f(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    name: str = _f("cpu-default", "name of the run, used for the work folder and the model card")
    base_model: str = _f("embedded", "base model: 'embedded' (SmolLM2-135M), a hub id or a local folder")
    requires_gpu: bool = _f(False, "stop at once when no CUDA GPU is present (7B configs)")
    quantize_4bit: bool = _f(True, "on CUDA, load the base in 4-bit nf4 (QLoRA); ignored on CPU")
    train_data: str = _f("data/train.jsonl", "training conversations (JSONL, see data/README.md)")
    dev_data: str = _f("data/dev.jsonl", "held-out conversations scored after training")
    adapter_dir: str = _f("models/adapter", "where the finished adapter, tokenizer and model card go")
    work_dir: str = _f("runs/cpu-default", "checkpoints and logs; a rerun resumes from the last checkpoint")
    lora_r: int = _f(64, "LoRA rank")
    lora_alpha: int = _f(16, "LoRA alpha (scaling = alpha / r)")
    lora_dropout: float = _f(0.1, "dropout on the LoRA input")
    learning_rate: float = _f(2e-4, "peak learning rate")
    lr_scheduler: str = _f("constant", "transformers scheduler name; 'constant' ignores warmup")
    warmup_ratio: float = _f(0.0, "share of steps to warm up (only with a *_with_warmup or decaying scheduler)")
    batch_size: int = _f(4, "conversations per device step")
    grad_accum: int = _f(2, "steps accumulated per optimizer update")
    epochs: float = _f(1.0, "passes over the training data")
    max_steps: int = _f(-1, "stop after this many optimizer updates (-1: use epochs)")
    max_length: int = _f(1024, "token budget of one training example (matches the bot's window)")
    max_grad_norm: float = _f(0.3, "gradient clipping")
    gradient_checkpointing: bool = _f(True, "recompute activations in backward to save memory")
    logging_steps: int = _f(5, "log loss every N updates")
    save_steps: int = _f(25, "checkpoint every N updates (for resuming)")
    seed: int = _f(42, "random seed")
    eval_replies: int = _f(20, "speak points whose generated reply is compared with the reference")
    notes: str = _f("", "free text for the model card: what was tried and why these settings")

    @classmethod
    def from_yaml(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"config file {path} not found (configs: {', '.join(available())})")
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of settings")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


def available() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config(value: str | None) -> Path:
    """A config path, or a bare name from training/configs (``smoke``)."""
    if value is None:
        return DEFAULT_CONFIG
    path = Path(value)
    return path if path.suffix in (".yaml", ".yml") or path.exists() else CONFIG_DIR / f"{value}.yaml"
