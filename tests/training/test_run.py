"""The pipeline itself (``training.run.run``) on the real embedded model, plus its configuration."""

import json
import os

import pytest
import torch

from training.config import available, parse_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """``run()`` on the smoke config with four short conversations; returns (config, scores)."""
    from training.dataset import load_conversations
    from training.run import run

    work = tmp_path_factory.mktemp("smoke")
    # The same four short conversations every step: the loss must fall on data it sees again.
    short = [c for c in load_conversations("data/train.jsonl") if len(c.messages) < 12][:4]
    train = work / "train.jsonl"
    train.write_text("".join(json.dumps(messages) + "\n" for _, messages in short))
    answers = work / "answers.jsonl"
    items = open("data/answers.jsonl", encoding="utf-8").readlines()
    answers.write_text(items[0] + items[-1])  # two forced replies
    config = parse_config(["--config", "smoke", "--output_dir", str(work / "checkpoints"),
                           "--adapter_dir", str(work / "adapter"), "--train_data", str(train),
                           "--dev_data", "data/dev.jsonl", "data/dev-voices.jsonl",
                           "--max_steps", "6", "--augment_share", "0", "--eval_points", "24",
                           "--eval_flip_points", "12", "--eval_answers", str(answers)])
    return config, run(config)


def test_loss_goes_down(smoke):
    _, scores = smoke
    losses = scores["train_losses"]
    assert len(losses) >= 4
    assert losses[-1] < losses[0]


def test_only_lora_weights_are_saved_and_they_were_trained(smoke):
    from safetensors.torch import load_file

    config, _ = smoke
    tensors = load_file(f"{config.script.adapter_dir}/adapter_model.safetensors")
    assert tensors and all("lora_" in name for name in tensors)  # no base weight was trained or saved
    # PEFT starts every lora_B at zero: a nonzero one was changed by training.
    assert any(torch.count_nonzero(t) for name, t in tensors.items() if "lora_B" in name)


def test_threshold_read_off_dev_is_stored_and_read_back(smoke):
    from models.threshold import adapter_threshold

    config, scores = smoke
    assert scores["threshold_source"] == "read off this data"
    assert adapter_threshold(config.script.adapter_dir) == scores["threshold"]
    assert 0 < scores["decisions"] <= 24  # a small dev sample, not the whole file
    card = open(f"{config.script.adapter_dir}/README.md").read()
    assert f"speaks when p >= {scores['threshold']:.2f}" in card and "| this adapter |" in card


def test_the_card_shows_each_dev_file_the_flip_rate_and_the_answers(smoke):
    config, scores = smoke
    card = open(f"{config.script.adapter_dir}/README.md").read()
    assert set(scores["per_file"]) == {"data/dev.jsonl", "data/dev-voices.jsonl"}
    # Both files were sampled, and their decisions add up to the whole.
    assert all(row["decisions"] > 0 for row in scores["per_file"].values())
    assert sum(row["decisions"] for row in scores["per_file"].values()) == scores["decisions"]
    assert "| `data/dev.jsonl` |" in card and "| `data/dev-voices.jsonl` |" in card
    flip = scores["flip"]
    assert flip["points"] > 0 and f"{flip['flips']} of {flip['points']} dev decisions" in card
    answers = scores["answers"]
    assert answers["items"] == 2 and "## Answers" in card and "answer_accuracy" in card
    replies = open(f"{config.script.adapter_dir}/report/answers_replies.jsonl").read().splitlines()
    assert [json.loads(line)["id"] for line in replies] == [json.loads(line)["id"] for line in
                                                           open(config.script.eval_answers)]


def test_saved_adapter_loads_in_the_engine(smoke):
    from models.loading import load_engine
    from models.turns import Turn

    config, _ = smoke
    engine = load_engine("embedded", config.script.adapter_dir)
    assert engine.describe()["adapter"] == config.script.adapter_dir
    probability = engine.decide([Turn.user("Ana", "@assistant what is 2+2?")])
    assert 0.0 <= probability <= 1.0
    saved = json.loads(open(f"{config.script.adapter_dir}/adapter_config.json").read())
    assert saved["r"] == config.model.lora_r


def test_a_gpu_config_without_a_gpu_stops_at_once():
    from training.finetune import NoGpuError, check_hardware

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    config = parse_config(["--config", "openchat-3.5"])
    with pytest.raises(NoGpuError, match="needs a CUDA GPU"):
        check_hardware(config)


def test_unknown_config_keys_are_rejected(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("lora_rank: 8\n")
    with pytest.raises(ValueError, match="lora_rank"):
        parse_config(["--config", str(path)])


def test_every_shipped_config_parses():
    for name in available():
        assert parse_config(["--config", name]).name == name


def test_missing_default_data_files_are_skipped_but_named_ones_must_exist(tmp_path, monkeypatch):
    config = parse_config(["--config", "cpu-default"])
    assert "data/train.jsonl" in config.script.train_data
    assert all(os.path.exists(f) for f in config.script.train_data)
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        parse_config(["--config", "smoke", "--train_data", "data/train.jsonl", str(tmp_path / "nope.jsonl")])


def test_help_lists_every_training_field(capsys):
    import dataclasses

    from trl import ModelConfig, SFTConfig

    from training.config import ChimeInArguments

    with pytest.raises(SystemExit):
        parse_config(["--help"])
    text = capsys.readouterr().out
    for cls in (ChimeInArguments, SFTConfig, ModelConfig):
        for field in dataclasses.fields(cls):
            if field.init:
                assert f"--{field.name}" in text, field.name
