"""The LoRA finetune: TRL's SFTTrainer on pre-built labels, with decision tokens weighted.

The base loads through ``models.loading`` (the one loader), in 4-bit nf4 on CUDA
when the config asks for it (TRL's ``get_quantization_config``) and in full
precision on a CPU; compute is bf16 where the hardware has it, otherwise fp32,
never fp16 (the seed's Llama-2 loss collapsed to 0.0 in fp16). The dataset
arrives tokenized with its own ``labels`` and ``loss_weights`` (``training.prepare``).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from training.config import RunConfig

log = logging.getLogger(__name__)
IGNORE = -100


class NoGpuError(RuntimeError):
    """A GPU config on a machine without a CUDA GPU."""


def check_hardware(config: RunConfig) -> None:
    import torch

    if config.script.requires_gpu and not torch.cuda.is_available():
        raise NoGpuError(
            f"config {config.name!r} trains a {config.model.model_name_or_path} base and needs a CUDA GPU, "
            "but none is available here. Use the CPU default (python -m training.run) or run "
            "this config on a GPU host (docker compose run train ...)."
        )


def use_bf16() -> bool:
    import torch

    from models.loading import cpu_has_native_bf16

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


def load_base_for_training(config: RunConfig):
    """Base model and tokenizer (pad distinct from EOS, right padding), 4-bit on CUDA when asked."""
    import torch
    from trl import get_quantization_config

    from models.loading import cpu_has_amx, load_model, pick_device_and_dtype

    model_args = config.model
    dtype = model_args.dtype if model_args.dtype in ("bfloat16", "float32") else "auto"
    device, torch_dtype = pick_device_and_dtype(dtype)
    if device == "cpu" and dtype == "auto" and cpu_has_amx():
        # The frozen base in bf16 where AMX tiles run bf16 matmuls; see below.
        torch_dtype = torch.bfloat16
    quantization = None
    if device == "cuda":
        quantization = get_quantization_config(replace(model_args, dtype=torch_dtype))
    elif model_args.load_in_4bit or model_args.load_in_8bit:
        log.warning("no CUDA GPU: loading the base unquantized")
    # On CUDA the frozen base is bf16 (or 4-bit). On a CPU with AMX it is bf16 too:
    # measured on a 2-core Xeon with AMX (python -m training.speed), a step took 4.5 s
    # against 6.6 s with fp32 weights under bf16 autocast. On CPUs with AVX512-BF16
    # but no AMX (a 2-core AMD EPYC) bf16 weights made a step slower, so the base
    # stays fp32 there, under autocast. The LoRA weights are fp32 either way (PEFT).
    loaded = load_model(model_args.model_name_or_path, adapter=None, quantize="none",
                        dtype=str(torch_dtype).removeprefix("torch."), quantization_config=quantization)
    loaded.tokenizer.padding_side = "right"
    return loaded.model, loaded.tokenizer


class PadCollator:
    """Right-pads a batch: ids with the pad token, labels with -100, loss weights with 0."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        width = max(len(e["input_ids"]) for e in examples)

        def column(key, fill, dtype):
            return torch.tensor([e[key] + [fill] * (width - len(e[key])) for e in examples], dtype=dtype)

        return {
            "input_ids": column("input_ids", self.pad_token_id, torch.long),
            "attention_mask": torch.tensor([[1] * len(e["input_ids"]) + [0] * (width - len(e["input_ids"]))
                                            for e in examples], dtype=torch.long),
            "labels": column("labels", IGNORE, torch.long),
            "loss_weights": column("loss_weights", 0.0, torch.float),
        }


def weighted_loss(model, inputs: dict, num_items_in_batch=None):
    """Weighted next-token cross-entropy, with the LM head run on labelled positions only.

    TRL's own loss runs the LM head on every position on a CPU (its compact path is
    Triton-only); here the few labelled positions are picked from the hidden states
    first, which also saves the full vocabulary projection of the people's turns.
    The sum is divided by the labelled-token count, as TRL's is, and the weights
    have mean 1 per example, so the loss stays on the familiar scale.
    """
    import torch
    import torch.nn.functional as F

    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal_lm.base_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                  use_cache=False).last_hidden_state[:, :-1]
    labels, weights = inputs["labels"][:, 1:], inputs["loss_weights"][:, 1:]
    mask = labels != IGNORE
    logits = causal_lm.get_output_embeddings()(hidden[mask]).float()
    per_token = F.cross_entropy(logits, labels[mask], reduction="none")
    count = mask.sum() if num_items_in_batch is None else num_items_in_batch
    return (per_token * weights[mask].to(per_token.dtype)).sum() / torch.as_tensor(count).clamp(min=1)


def trainer_class():
    from trl import SFTTrainer

    class WeightedSFTTrainer(SFTTrainer):
        """SFTTrainer whose loss weighs each labelled token by the example's ``loss_weights``."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = weighted_loss(model, inputs, num_items_in_batch)
            return (loss, None) if return_outputs else loss

    return WeightedSFTTrainer


def build_trainer(config: RunConfig, model, tokenizer, examples: list[dict]):
    from datasets import Dataset
    from trl import get_peft_config

    args = config.training
    if args.bf16 and not use_bf16():
        log.info("no bf16 hardware here: training in fp32")
        args.bf16 = False
    args.remove_unused_columns = False  # keep loss_weights for compute_loss
    args.packing = False
    args.include_num_input_tokens_seen = "non_padding"  # for run's tokens-per-second line
    trainer = trainer_class()(model=model, args=args, train_dataset=Dataset.from_list(examples),
                              processing_class=tokenizer, peft_config=get_peft_config(config.model),
                              data_collator=PadCollator(tokenizer.pad_token_id))
    if not args.bf16:
        # TRL casts trainable LoRA weights of a quantized model to bf16 even with
        # bf16=False; on hardware without bf16 train them in fp32 instead.
        for parameter in trainer.model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.float()
    return trainer


def last_checkpoint(config: RunConfig) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(config.training.output_dir)
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None
