"""The QLoRA finetune: TRL's SFTTrainer with a PEFT LoRA adapter on pre-built labels.

The base loads in 4-bit nf4 on CUDA (QLoRA) and in full precision on a CPU;
compute is bf16 where the hardware has it, otherwise fp32, never fp16 (the seed's
Llama-2 loss collapsed to 0.0 in fp16). The dataset arrives tokenized with its
own ``labels`` (see ``training.prepare``), which TRL uses as they are.
"""

from __future__ import annotations

import logging
from pathlib import Path

from training.config import TrainConfig

log = logging.getLogger(__name__)


class NoGpuError(RuntimeError):
    """A GPU config on a machine without a CUDA GPU."""


def check_hardware(config: TrainConfig) -> None:
    import torch

    if config.requires_gpu and not torch.cuda.is_available():
        raise NoGpuError(
            f"config {config.name!r} trains a {config.base_model} base and needs a CUDA GPU, "
            "but none is available here. Use the CPU default (python -m training.run) or run "
            "this config on a GPU host (docker compose run train ...)."
        )


def use_bf16() -> bool:
    import torch

    from models.loading import cpu_has_native_bf16

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_native_bf16()


def load_base_for_training(config: TrainConfig):
    """Base model and tokenizer (pad distinct from EOS), 4-bit on CUDA when asked."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from models.loading import ModelLoadError, load_tokenizer, resolve_model

    source = resolve_model(config.base_model)
    tokenizer = load_tokenizer(source)
    tokenizer.padding_side = "right"
    # On CUDA the frozen base is bf16 (or 4-bit); on a CPU it stays fp32 under bf16
    # autocast: measured here, bf16 weights made a CPU training step slower, not faster.
    kwargs: dict = {"dtype": torch.bfloat16 if use_bf16() and torch.cuda.is_available() else torch.float32}
    if torch.cuda.is_available():
        kwargs["device_map"] = {"": 0}
        if config.quantize_4bit:
            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch.bfloat16 if use_bf16() else torch.float32,
            )
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"cannot load base model {config.base_model!r}: {error}") from error
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    return model, tokenizer


def build_trainer(config: TrainConfig, model, tokenizer, examples: list[dict]):
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    bf16 = use_bf16()
    args = SFTConfig(
        output_dir=str(Path(config.work_dir) / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=config.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        max_grad_norm=config.max_grad_norm,
        max_length=config.max_length,
        packing=False,
        bf16=bf16,
        fp16=False,
        use_cpu=not torch.cuda.is_available(),
        activation_checkpointing=config.gradient_checkpointing,
        logging_steps=config.logging_steps,
        logging_first_step=True,
        save_steps=config.save_steps,
        save_total_limit=2,
        seed=config.seed,
        report_to="none",
        optim="paged_adamw_32bit" if torch.cuda.is_available() else "adamw_torch",
        dataloader_num_workers=0,
        # Batches of similar length waste less compute on padding (a third here).
        train_sampling_strategy="group_by_length",
        disable_tqdm=False,
    )
    peft_config = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                             target_modules="all-linear", task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(examples),
                         processing_class=tokenizer, peft_config=peft_config)
    if not bf16:
        # TRL casts trainable LoRA weights of a quantized model to bf16 even with
        # bf16=False; on hardware without bf16 train them in fp32 instead.
        for parameter in trainer.model.parameters():
            if parameter.requires_grad:
                parameter.data = parameter.data.float()
    return trainer


def last_checkpoint(config: TrainConfig) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = Path(config.work_dir) / "checkpoints"
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None
