"""The smoke run of the whole pipeline on the real embedded model (a few steps)."""

import json

import pytest
import torch

from training.config import TrainConfig, resolve_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """Train the smoke config on a few conversations; keep the trainer to inspect weights."""
    from models.template import ChatFormat
    from training.dataset import load_conversations
    from training.finetune import build_trainer, load_base_for_training
    from training.prepare import encode_dataset

    work = tmp_path_factory.mktemp("smoke")
    config = TrainConfig.from_yaml(resolve_config("smoke"))
    config.work_dir, config.adapter_dir = str(work), str(work / "adapter")
    config.max_steps = 6
    model, tokenizer = load_base_for_training(config)
    fmt = ChatFormat(tokenizer, max_turn_tokens=config.max_length // 4)
    # The same four short conversations every step: the loss must fall on data it sees again.
    conversations = [c for c in load_conversations(config.train_data) if len(c) < 12][:4]
    examples = encode_dataset(fmt, conversations, config.max_length)
    trainer = build_trainer(config, model, tokenizer, examples)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    result = trainer.train()
    trainer.save_model(config.adapter_dir)
    tokenizer.save_pretrained(config.adapter_dir)
    return config, trainer, before, result


def test_loss_goes_down(smoke):
    _, trainer, _, _ = smoke
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) >= 4
    assert losses[-1] < losses[0]


def test_lora_weights_change_and_base_weights_do_not(smoke):
    _, trainer, before, _ = smoke
    changed_lora = changed_base = 0
    for name, parameter in trainer.model.named_parameters():
        differs = not torch.equal(before[name], parameter.detach())
        if "lora_" in name:
            changed_lora += differs
        else:
            changed_base += differs
    assert changed_lora > 0
    assert changed_base == 0


def test_saved_adapter_loads_in_the_engine(smoke):
    from models.loading import load_engine
    from models.turns import Turn

    config, _, _, _ = smoke
    engine = load_engine("embedded", config.adapter_dir)
    assert engine.describe()["adapter"] == config.adapter_dir
    probability = engine.decide([Turn.user("Ana", "@assistant what is 2+2?")])
    assert 0.0 <= probability <= 1.0
    saved = json.loads(open(f"{config.adapter_dir}/adapter_config.json").read())
    assert saved["r"] == config.lora_r


def test_a_gpu_config_without_a_gpu_stops_at_once():
    from training.finetune import NoGpuError, check_hardware

    config = TrainConfig.from_yaml(resolve_config("openchat-3.5"))
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(NoGpuError, match="needs a CUDA GPU"):
        check_hardware(config)


def test_unknown_config_keys_are_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("lora_rank: 8\n")
    with pytest.raises(ValueError, match="unknown setting"):
        TrainConfig.from_yaml(path)


def test_every_shipped_config_parses():
    from training.config import available

    for name in available():
        assert TrainConfig.from_yaml(resolve_config(name)).name == name
