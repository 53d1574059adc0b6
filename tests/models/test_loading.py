"""Loading the embedded model, and clear errors for bad paths."""

import pytest

from models.loading import ModelLoadError, load_model, resolve_adapter, resolve_model


def test_pad_and_eos_differ(tokenizer):
    assert tokenizer.pad_token_id is not None
    assert tokenizer.pad_token_id != tokenizer.eos_token_id


def test_embedded_model_is_a_converted_local_folder(loaded):
    folder = resolve_model("embedded")
    assert folder.endswith("SmolLM2-135M-Instruct")
    assert loaded.model.config.model_type == "llama"


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist or has no config.json"):
        load_model(str(tmp_path / "nowhere"), adapter=None)


def test_broken_model_folder_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="cannot load model"):
        load_model(str(tmp_path), adapter=None)


def test_missing_adapter_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="adapter folder"):
        resolve_adapter(tmp_path / "no-adapter")


def test_adapter_none_means_bare_model():
    assert resolve_adapter("none") is None
    assert resolve_adapter(None) is None


MISTRAL_7B = {"model_type": "mistral", "hidden_size": 4096, "num_hidden_layers": 32, "intermediate_size": 14336,
              "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32000,
              "tie_word_embeddings": False}


def test_parameter_count_is_read_off_the_config_sizes(loaded):
    from transformers import MistralConfig

    from models.loading import parameter_count

    embedded = parameter_count(loaded.model.config)
    assert abs(embedded - loaded.model.num_parameters()) / loaded.model.num_parameters() < 0.01
    assert 7.1e9 < parameter_count(MistralConfig(**MISTRAL_7B)) < 7.3e9  # Mistral-7B: 7.24B


def test_only_large_models_are_quantized_by_default(tmp_path):
    """Previously every model loaded in 4-bit on CUDA, the 135M default included, whose scores
    were measured in float32."""
    import json

    from models.loading import wants_4bit

    large = tmp_path / "large"
    large.mkdir()
    (large / "config.json").write_text(json.dumps(MISTRAL_7B))
    small = resolve_model("embedded")
    assert wants_4bit("auto", str(large)) and not wants_4bit("auto", small)
    assert wants_4bit("4bit", small) and not wants_4bit("none", str(large))
    assert wants_4bit("auto", str(tmp_path / "unreadable")), "a size that cannot be read counts as large"
    with pytest.raises(ModelLoadError, match="unknown quantize"):
        wants_4bit("8bit", small)
