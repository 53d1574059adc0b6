"""Training throughput, before and after, measured in one run on the same examples.

    python -m training.speed                     # 16 examples, batches of 4: run5, then weighted
    python -m training.speed --examples 32 --batch 8 --variants trl run5 weighted

``weighted``: ``training.finetune``'s trainer with the config as it is (the
cpu-default: no LoRA dropout, the frozen base in bf16 where the CPU has AMX,
bf16 autocast where it has bf16 at all), whose loss runs the LM head on the
labelled positions only and weighs decision tokens. ``run5``: the same trainer
with the settings the run-5 adapter trained with (LoRA dropout 0.05, the frozen
base in float32 under autocast). ``trl``: SFTTrainer's own loss on the config
as it is (on a CPU its fused LM head scores every position; its compact path is
Triton-only). All start from the same base weights and train the same examples,
in batches of similar length. Printed: real (non-padding) tokens per wall
second, and per CPU second divided by the cores in use, which still holds on a
busy shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace


def measure(variant: str, config, examples: list[dict]) -> dict:
    from datasets import Dataset
    from trl import SFTTrainer, get_peft_config

    from training.finetune import build_trainer, load_base_for_training

    if variant == "run5":
        config = config._replace(model=replace(config.model, lora_dropout=0.05, dtype="float32"))
    model, tokenizer = load_base_for_training(config)
    if variant in ("weighted", "run5"):
        trainer = build_trainer(config, model, tokenizer, examples)
    else:
        plain = [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples]
        trainer = SFTTrainer(model=model, args=config.training, train_dataset=Dataset.from_list(plain),
                             processing_class=tokenizer, peft_config=get_peft_config(config.model))
    tokens = sum(len(e["input_ids"]) for e in examples)
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.train()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    cores = len(os.sched_getaffinity(0))
    return {"variant": variant, "examples": len(examples), "tokens": tokens, "wall_seconds": round(wall, 1),
            "tokens_per_second": round(tokens / wall, 1),
            "tokens_per_cpu_second_per_core": round(tokens / (cpu / cores), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="cpu-default")
    parser.add_argument("--examples", type=int, default=16, help="examples trained by each variant")
    parser.add_argument("--batch", type=int, default=4, help="examples per step")
    parser.add_argument("--variants", nargs="+", default=["run5", "weighted"], choices=["trl", "run5", "weighted"],
                        help="measured in this order; with two, the second against the first")
    args = parser.parse_args(argv)

    from models.template import ChatFormat
    from training.config import parse_config
    from training.dataset import load_files
    from training.finetune import load_base_for_training
    from training.metrics import evenly_spaced
    from training.prepare import encode_dataset

    config = parse_config(["--config", args.config])
    _, tokenizer = load_base_for_training(config)
    conversations = load_files(config.script.train_data)
    picked = [conversations[i] for i in evenly_spaced(len(conversations), args.examples)]
    examples = encode_dataset(ChatFormat(tokenizer, config.training.max_length // 4), picked,
                              config.training.max_length, config.script.decision_weight)[: args.examples]
    results = []
    with tempfile.TemporaryDirectory() as work:
        training = replace(config.training, output_dir=work, max_steps=len(examples) // args.batch,
                           per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
                           save_strategy="no", logging_strategy="no", disable_tqdm=True)
        for variant in args.variants:
            result = measure(variant, config._replace(training=training), examples)
            print(json.dumps(result), flush=True)
            results.append(result)
    if len(results) == 2:
        before, after = results
        print(f"tokens/s {before['tokens_per_second']} -> {after['tokens_per_second']} (wall); "
              f"per CPU-second per core {before['tokens_per_cpu_second_per_core']} -> "
              f"{after['tokens_per_cpu_second_per_core']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
