"""Chime In's configuration, read from the environment and ``.env``: one for every front end.

The Discord bot (``python -m bot``), the terminal chat (``python -m bot chat``)
and ``python -m bot check`` all read this one ``Settings``; command-line flags
override a field under its own name (``--chattiness`` sets ``chattiness``, see
``add_setting_flags``). Every knob here is one the code reads; ``.env.example``
lists the same fields, one for one, with comments (a test keeps the two in step).

The Discord token is only needed to connect: ``load_settings(require_token=True)``
(the bot) refuses to start without it; the chat and the check read the rest
without it. A placeholder left over from ``.env.example`` is refused whenever
it is set, with a message that says what to do.

To add a setting: a field with a default and a ``description`` (it becomes the
flag's help), a line in ``.env.example``, and the field's name in a front end's
flags where it should be overridable there.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.names import parse_names
from models.threshold import SPEAK_THRESHOLD, threshold_to_chattiness
from models.turns import WINDOW_TOKENS

ENV_PREFIX = "CHIMEIN_"
TOKEN_ENV = "DISCORD_TOKEN"
# Values people leave in by mistake: the one in .env.example and the usual suspects.
PLACEHOLDER_TOKENS = frozenset({
    "your-token-here", "your_token_here", "your-bot-token", "your_bot_token", "changeme",
    "change-me", "change_me", "replace-me", "replace_me", "token", "discord_token", "xxx",
    "<token>", "<your-token>", "none", "null",
})


class SettingsError(Exception):
    """Configuration a person has to fix before the bot can start."""


class Settings(BaseSettings):
    """Chime In's settings (environment variables, or a ``.env`` file)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=".env",
                                      env_file_encoding="utf-8", extra="ignore")

    discord_token: SecretStr | None = Field(
        None, validation_alias=TOKEN_ENV,
        description="The bot's token from the Discord developer portal (Bot -> Reset Token); "
                    "only the Discord bot needs it.")
    model: str = Field(
        "embedded",
        description="'embedded' (SmolLM2-135M, no download), a Hugging Face model id, or a local folder.")
    adapter: str = Field(
        "auto",
        description="LoRA adapter folder; 'auto' = the shipped adapter when present, 'none' = bare model.")
    window_tokens: int = Field(
        WINDOW_TOKENS, ge=128, description="Token budget of the conversation the model sees per decision.")
    quantize: Literal["auto", "4bit", "none"] = Field(
        "auto", description="On a CUDA GPU: 'auto' = 4-bit nf4 for models above 1B parameters, bf16 "
                            "otherwise; '4bit' or 'none' to choose. Ignored on a CPU (float32).")
    chattiness: float | None = Field(
        None, ge=0.0, le=1.0,
        description="Default of how readily it chimes in on its own: 0 never, 1 on every message. "
                    "It speaks when the model's speak probability reaches 1 - chattiness. "
                    "Empty: the one the adapter was tuned for "
                    f"(1 - its speak threshold; {threshold_to_chattiness(SPEAK_THRESHOLD):.2f} "
                    "when it stores none).")
    channels: Annotated[frozenset[int], NoDecode] = Field(
        frozenset(), description="Comma-separated channel ids it may read (threads follow their "
                                 "channel); empty = every channel it can read.")
    ignored_channels: Annotated[frozenset[int], NoDecode] = Field(
        frozenset(), description="Comma-separated channel ids it must never read, even when "
                                 "CHIMEIN_CHANNELS is empty (threads follow their channel).")
    dms: bool = Field(True, description="Answer direct messages (true/false).")
    blocked_users: Annotated[frozenset[int], NoDecode] = Field(
        frozenset(), description="Comma-separated user ids it ignores entirely: never read, never answered.")
    blocked_roles: Annotated[frozenset[int], NoDecode] = Field(
        frozenset(), description="Comma-separated role ids whose members it ignores in servers "
                                 "(DMs carry no roles: block the user, or set CHIMEIN_DMS=false).")
    bot_replies: int = Field(
        3, ge=0, description="Loop guard: at most this many answers to other bots per channel in "
                             "CHIMEIN_BOT_REPLY_SECONDS, then silence (0 = never answer bots).")
    bot_reply_seconds: float = Field(
        600.0, gt=0, description="The time span of the loop guard, in seconds.")
    bot_names: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Comma-separated extra names people call the bot; its Discord names are "
                        "always included. Rewritten to 'assistant' for the model.")
    knowledge_dir: Path | None = Field(
        None, description="Folder of Markdown/text notes it answers from (docs/notes.md); a subfolder "
                          "named by a server or channel id holds notes for that place only. Empty = no notes.")
    state_dir: Path = Field(
        Path("state"), description="Folder for the per-channel settings file (channels.json).")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Logging level; INFO logs one line per decision.")
    # Served models (docs/serving.md): empty URLs = the in-process engine.
    engine_url: str = Field(
        "", description="OpenAI-compatible server hosting the finetuned format (vLLM with the adapter, "
                        "llama.cpp's server), e.g. http://vllm:8000/v1: decisions and replies go there.")
    engine_model: str = Field(
        "chimein", description="The model name on CHIMEIN_ENGINE_URL (vLLM: the --lora-modules name).")
    reply_url: str = Field(
        "", description="OpenAI-compatible server of a general chat model (Ollama, vLLM, a hosted API), "
                        "e.g. http://localhost:11434/v1: replies only; the finetuned model still decides.")
    reply_model: str = Field(
        "", validate_default=True, description="The model name on CHIMEIN_REPLY_URL, e.g. llama3.1:8b.")
    api_key: SecretStr | None = Field(
        None, description="API key sent to those servers (a secret); empty for servers without one.")
    request_timeout_seconds: float = Field(
        30.0, gt=0, description="Seconds to wait for a served model's answer before giving up.")

    @field_validator("discord_token")
    @classmethod
    def _real_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        token = value.get_secret_value().strip()
        if not token:
            raise ValueError("is empty")
        if token.lower() in PLACEHOLDER_TOKENS or token.lower().startswith(("your", "<")):
            raise ValueError(
                f"is still the placeholder {token!r}: put your bot's token from "
                "https://discord.com/developers/applications (Bot -> Reset Token) in .env")
        if any(c.isspace() for c in token):
            raise ValueError("contains whitespace; paste the token alone")
        return SecretStr(token)

    @field_validator("channels", "ignored_channels", "blocked_users", "blocked_roles", mode="before")
    @classmethod
    def _discord_ids(cls, value, info: ValidationInfo):
        kind = info.field_name.split("_")[-1].removesuffix("s")  # channel, user, role
        if isinstance(value, str):
            value = [part for part in value.replace(" ", ",").split(",") if part]
        try:
            ids = frozenset(int(v) for v in value)
        except ValueError as error:
            raise ValueError(f"{kind} ids must be numbers (right-click -> Copy ID): {error}") from None
        if bad := sorted(i for i in ids if i <= 0):
            raise ValueError(f"{bad[0]} is not a {kind} id: Discord ids are positive numbers (right-click -> Copy ID)")
        return ids

    @field_validator("bot_names", mode="before")
    @classmethod
    def _names(cls, value):
        return parse_names(value)

    @field_validator("chattiness", "knowledge_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("engine_url", "reply_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL; the server's base, e.g. http://localhost:8000/v1")
        return value.rstrip("/")

    @field_validator("reply_model")
    @classmethod
    def _reply_model_named(cls, value: str, info) -> str:
        if info.data.get("reply_url") and not value.strip():
            raise ValueError("not set, but CHIMEIN_REPLY_URL is: name the model to use there")
        return value.strip()

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value):
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value):
        return value.upper() if isinstance(value, str) else value

    @property
    def adapter_arg(self) -> str | Path | None:
        """The adapter as ``models.loading.load_engine`` takes it."""
        if self.adapter.lower() in ("", "none"):
            return None
        return "auto" if self.adapter == "auto" else Path(self.adapter)

    def load_notes(self):
        """The notes of CHIMEIN_KNOWLEDGE_DIR (``models.notes.Notes``, indexed now), or None when unset."""
        if self.knowledge_dir is None:
            return None
        from models.notes import Notes, NotesError

        try:
            return Notes(self.knowledge_dir)
        except NotesError as error:
            raise SettingsError(f"Chime In cannot start; fix its configuration:\n  {error}") from None

    def default_chattiness(self, engine_info: Mapping) -> float:
        """The chattiness set here, else the one the loaded adapter was tuned for.

        ``engine_info`` is the engine's ``describe()``, which carries the adapter's
        ``speak_threshold`` (``models.loading.load_engine``).
        """
        if self.chattiness is not None:
            return self.chattiness
        return threshold_to_chattiness(engine_info.get("speak_threshold", SPEAK_THRESHOLD))


class BotSettings(Settings):
    """The settings of the Discord bot itself: the same, with the token required."""

    discord_token: SecretStr = Field(validation_alias=TOKEN_ENV,
                                     description=Settings.model_fields["discord_token"].description)


def env_names() -> dict[str, str]:
    """Field name -> the environment variable that sets it."""
    return {name: TOKEN_ENV if name == "discord_token" else ENV_PREFIX + name.upper()
            for name in Settings.model_fields}


def load_settings(*, require_token: bool = False, **overrides) -> Settings:
    """Settings from the environment and ``.env``; problems become one readable SettingsError.

    ``overrides`` (field name -> value, e.g. from command-line flags) win over both.
    ``require_token``: the Discord bot's settings, which cannot start without ``DISCORD_TOKEN``.
    """
    try:
        return (BotSettings if require_token else Settings)(**overrides)
    except ValidationError as error:
        names = env_names()
        lines = []
        for problem in error.errors():
            field = str(problem["loc"][0]) if problem["loc"] else "?"
            variable = names.get(field, field)
            message = problem["msg"].removeprefix("Value error, ")
            if problem["type"] == "missing":
                message = "not set (see .env.example)"
            lines.append(f"  {variable}: {message}")
        raise SettingsError("Chime In cannot start; fix its configuration:\n" + "\n".join(lines)) from None


def add_setting_flags(parser: argparse.ArgumentParser, fields: Iterable[str]) -> None:
    """One flag per field (``window_tokens`` -> ``--window-tokens``), its help from the field.

    A flag that is not given leaves the field to the environment, ``.env`` and the
    default; ``setting_overrides`` picks the given ones out of the parsed arguments.
    """
    names = env_names()
    for name in fields:
        field = Settings.model_fields[name]
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=argparse.SUPPRESS,
                            metavar=name.upper(), help=f"{field.description} (sets {names[name]})")


def setting_overrides(args: argparse.Namespace) -> dict:
    """The settings given on the command line, as ``load_settings`` overrides."""
    return {name: value for name, value in vars(args).items() if name in Settings.model_fields}
