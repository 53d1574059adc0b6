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
