"""GPU check: a 7B-class model in 4-bit, a few QLoRA steps and the engine with its adapter, measured on CUDA.

    .venv/bin/python -m benchmarks.gpu_check                      # on a CUDA machine; skips (exit 0) elsewhere
    .venv/bin/python -m benchmarks.gpu_check --device cpu --tiny  # the same code path on a tiny model (tests)

No model is downloaded. A causal LM with Mistral-7B's dimensions (hidden 4096,
32 layers, intermediate 14336, 32 heads, 8 key/value heads) and random weights
is written to a temporary folder together with the embedded model's tokenizer
and chat template (its vocabulary, 49,152 tokens, replaces Mistral's 32,000: the
embeddings are about 130 MB larger, so the memory numbers are an upper bound).
Everything after that is the project's own code:

1. **QLoRA**: ``training.config.parse_config`` with the OpenChat-3.5 (Mistral)
   config (its r, alpha, batch size, sequence length 1024, gradient
   checkpointing, optimizer), ``training.finetune.load_base_for_training`` (4-bit
   nf4, bf16 compute, through ``models.loading``) and ``build_trainer``, for
   ``--steps`` optimizer steps on examples of up to 1024 tokens built from the
   shipped conversations. Reported: peak GPU memory (goal: at most 16 GB) and
   trained tokens per second.
2. **Engine**: ``models.loading.load_engine`` with the adapter just trained
   (4-bit, as ``quantize=auto`` picks for a 7B model), over a 120-message
   conversation in a 1024-token window: every fourth cached decision against a
   full forward pass of the same tokens (goal: within 1e-2), p50/p95 decision
   milliseconds, reply tokens per second and peak GPU memory (goal: at most 8 GB).

The table comes first; the last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

SKIP_MESSAGE = "gpu_check: skipped: no CUDA GPU here (run with --device cpu --tiny for a dry run on the CPU)"
MISTRAL_7B = {"hidden_size": 4096, "num_hidden_layers": 32, "intermediate_size": 14336,
              "num_attention_heads": 32, "num_key_value_heads": 8}
# The same architecture, small enough to run the whole path on a CPU in seconds.
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
        "num_attention_heads": 4, "num_key_value_heads": 2}
TRAIN_CONFIG = "openchat-3.5"  # the Mistral-7B QLoRA config
SEQUENCE_TOKENS = 1024
TRAIN_GOAL_GB = 16
INFERENCE_GOAL_GB = 8
CACHE_TOLERANCE = 1e-2
REPLY_TOKENS = 64
DATA = Path(__file__).resolve().parent.parent / "data" / "train.jsonl"
DEV = Path(__file__).resolve().parent.parent / "data" / "dev.jsonl"


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                        help="cuda (the check); cpu runs the same path unquantized, for tests")
    parser.add_argument("--tiny", action="store_true", help="a tiny model of the same architecture")
    parser.add_argument("--steps", type=int, default=3, help="QLoRA optimizer steps")
    parser.add_argument("--messages", type=int, default=120, help="decisions measured by the engine")
    parser.add_argument("--replies", type=int, default=3, help="replies generated for the tokens/s figure")
    return parser.parse_args(argv)


# -- the model ---------------------------------------------------------------------


def write_random_model(folder: Path, dims: dict, device: str) -> int:
    """A Mistral-architecture causal LM with random weights and the embedded tokenizer, saved to ``folder``."""
    import torch
    from transformers import AutoModelForCausalLM, MistralConfig

    from models.loading import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model("embedded"))
    config = MistralConfig(**dims, vocab_size=len(tokenizer), max_position_embeddings=32768,
                           sliding_window=None, tie_word_embeddings=False,
                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                           pad_token_id=tokenizer.pad_token_id)
    # Initialised where it is fastest (a 7B init on a CPU takes minutes); saved in bf16 on CUDA.
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    parameters = model.num_parameters()
    del model
    _free(device)
    return parameters


def conversations() -> list[tuple[tuple, list[dict]]]:
    """The shipped conversations joined into long ones (no notes), so that training examples fill 1024 tokens."""
    from training.dataset import load_files

    joined, current = [], []
    for _, messages in load_files([str(DATA)]):
        current += messages
        if len(current) >= 60:
            joined.append(((), current))
            current = []
    return joined


# -- QLoRA ---------------------------------------------------------------------------


def train(folder: Path, work: Path, args) -> tuple[dict, Path]:
    """A few optimizer steps through the project's finetune path; the adapter is saved for the engine."""
    from models.template import ChatFormat
    from training.config import parse_config
    from training.finetune import build_trainer, check_hardware, load_base_for_training
    from training.prepare import encode_dataset

    overrides = ["--config", TRAIN_CONFIG, "--model_name_or_path", str(folder),
                 "--train_data", str(DATA), "--dev_data", str(DEV),
                 "--output_dir", str(work / "checkpoints"), "--adapter_dir", str(work / "adapter"),
                 "--max_steps", str(args.steps), "--save_strategy", "no", "--logging_steps", "1",
                 "--report_to", "none", "--max_length", str(SEQUENCE_TOKENS)]
    if args.device == "cpu":
        # No bitsandbytes kernels or paged optimizer without CUDA: the same steps, unquantized.
        overrides += ["--requires_gpu", "false", "--load_in_4bit", "false", "--optim", "adamw_torch",
                      "--bf16", "false"]
    config = parse_config(overrides)
    check_hardware(config)
    model, tokenizer = load_base_for_training(config)
    training = config.training
    fmt = ChatFormat(tokenizer, max_turn_tokens=training.max_length // 4)
    wanted = args.steps * training.per_device_train_batch_size * training.gradient_accumulation_steps
    examples = encode_dataset(fmt, conversations(), training.max_length, config.script.decision_weight)
    examples = sorted(examples, key=lambda e: -len(e["input_ids"]))[:wanted]
    trainer = build_trainer(config, model, tokenizer, examples)
    _reset_peak(args.device)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    adapter = Path(config.script.adapter_dir)
    trainer.save_model(str(adapter))
    tokenizer.save_pretrained(str(adapter))
    tokens = sum(len(e["input_ids"]) for e in examples)
    result = {
        "train_peak_gb": _peak_gb(args.device),
        "train_tokens_per_second": round(tokens / seconds, 1),
        "train_steps": args.steps,
        "train_examples": len(examples),
        "train_tokens_p50": statistics.median(len(e["input_ids"]) for e in examples),
        "train_seconds": round(seconds, 1),
        "lora_r": config.model.lora_r, "lora_alpha": config.model.lora_alpha,
        "batch_size": training.per_device_train_batch_size,
        "gradient_accumulation_steps": training.gradient_accumulation_steps,
        "gradient_checkpointing": bool(getattr(training, "activation_checkpointing", False)
                                       or getattr(training, "gradient_checkpointing", False)),
        "optimizer": str(training.optim).split(".")[-1].lower(),
        "quantized_training": bool(config.model.load_in_4bit),
    }
    del trainer, model
    _free(args.device)
    return result, adapter


# -- the engine ----------------------------------------------------------------------


def run_engine(folder: Path, adapter: Path, args) -> dict:
    """The engine with the adapter over a long conversation: cache against full passes, latency, memory."""
    from benchmarks.decision_latency import decision_windows, replay_conversation
    from benchmarks.measure import percentile
    from models.loading import load_engine

    _reset_peak(args.device)
    engine = load_engine(str(folder), adapter, window_tokens=SEQUENCE_TOKENS, merge_adapter=False)
    engine.max_reply_tokens = REPLY_TOKENS
    windows = decision_windows(replay_conversation())[: args.messages]
    times, worst, compared = [], 0.0, 0
    for i, window in enumerate(windows):
        _sync(args.device)
        start = time.perf_counter()
        probability = engine.decide(window, key="check")
        _sync(args.device)
        times.append((time.perf_counter() - start) * 1000)
        if i % 4 == 3:
            worst = max(worst, abs(probability - uncached_probability(engine, window, "check")))
            compared += 1
    reply_tokens, reply_seconds = 0, 0.0
    for window in windows[-args.replies:]:
        engine.forget("reply")
        start = time.perf_counter()
        text = engine.reply(window, key="reply")
        _sync(args.device)
        reply_seconds += time.perf_counter() - start
        reply_tokens += max(1, len(engine.tokenizer(text, add_special_tokens=False)["input_ids"]))
    return {
        "decisions": len(times),
        "decision_p50_ms": round(statistics.median(times), 2),
        "decision_p95_ms": round(percentile(times, 0.95), 2),
        "cache_max_abs_diff": round(worst, 5),
        "cache_checks": compared,
        "reply_tokens_per_second": round(reply_tokens / reply_seconds, 1),
        "inference_peak_gb": _peak_gb(args.device),
        "engine_dtype": engine.info["dtype"],
        "engine_quantization": engine.info.get("quantization"),
    }


def uncached_probability(engine, window, key) -> float:
    """The same decision from one full forward pass over the same tokens, no cache."""
    import torch

    feed, silence_id, response_id = engine.decision_inputs(window, key)
    device = next(engine.model.parameters()).device
    with torch.inference_mode():
        logits = engine.model(input_ids=torch.tensor([feed], device=device)).logits[0, -1].float()
    return float(torch.sigmoid(logits[response_id] - logits[silence_id]))


# -- memory and devices ------------------------------------------------------------


def _reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb(device: str) -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 1e9, 2) if device == "cuda" else None


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _free(device: str) -> None:
    import gc

    import torch

    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


# -- the run -----------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(SKIP_MESSAGE)
        return 0
    from models.library_logs import quiet_libraries

    quiet_libraries()
    dims = TINY if args.tiny else MISTRAL_7B
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as temp:
        work = Path(temp)
        parameters = write_random_model(work / "model", dims, args.device)
        trained, adapter = train(work / "model", work, args)
        served = run_engine(work / "model", adapter, args)
    result = {
        "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
        "model": "tiny" if args.tiny else "mistral-7b-dims", "parameters": parameters,
        **trained, **served,
        "train_within_goal": None if trained["train_peak_gb"] is None else trained["train_peak_gb"] <= TRAIN_GOAL_GB,
        "inference_within_goal": (None if served["inference_peak_gb"] is None
                                  else served["inference_peak_gb"] <= INFERENCE_GOAL_GB),
        "cache_within_tolerance": served["cache_max_abs_diff"] <= CACHE_TOLERANCE,
        "torch": torch.__version__,
    }
    print_table(result)
    print(json.dumps(result))
    return 0


def print_table(result: dict) -> None:
    gb = lambda value: "-" if value is None else f"{value:.2f} GB"  # noqa: E731
    print(f"gpu check on {result['device']}: {result['model']} ({result['parameters'] / 1e9:.2f}B parameters), "
          f"torch {result['torch']}")
    rows = [
        ("QLoRA peak memory", gb(result["train_peak_gb"]), f"<= {TRAIN_GOAL_GB} GB"),
        ("QLoRA tokens/s", f"{result['train_tokens_per_second']:.0f}",
         f"r={result['lora_r']} alpha={result['lora_alpha']} batch={result['batch_size']}x"
         f"{result['gradient_accumulation_steps']} seq<={SEQUENCE_TOKENS} {result['optimizer']}"),
        ("decision p50 / p95", f"{result['decision_p50_ms']:.1f} / {result['decision_p95_ms']:.1f} ms",
         f"{result['decisions']} messages, {SEQUENCE_TOKENS}-token window"),
        ("cached vs full pass", f"{result['cache_max_abs_diff']:.5f}",
         f"<= {CACHE_TOLERANCE} over {result['cache_checks']} checks"),
        ("reply tokens/s", f"{result['reply_tokens_per_second']:.0f}", f"greedy, up to {REPLY_TOKENS} tokens"),
        ("inference peak memory", gb(result["inference_peak_gb"]), f"<= {INFERENCE_GOAL_GB} GB"),
    ]
    for name, value, note in rows:
        print(f"{name:<24}{value:>22}   {note}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
