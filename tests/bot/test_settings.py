"""Settings: a missing or placeholder token fails at start with a message that says
what to do, and .env.example stays in step with the settings class."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from bot.settings import Settings, SettingsError, add_setting_flags, env_names, load_settings, setting_overrides
from models.threshold import SPEAK_THRESHOLD

ENV_EXAMPLE = Path(__file__).resolve().parents[2] / ".env.example"
REAL_LOOKING_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.Gabcde.abcdefghijklmnopqrstuvwxyz0123456789"


pytestmark = pytest.mark.usefixtures("clean_environment")


def test_missing_token_is_refused_with_a_pointer_to_the_example():
    with pytest.raises(SettingsError, match=r"DISCORD_TOKEN: not set \(see \.env\.example\)"):
        load_settings(require_token=True)


def test_only_the_discord_bot_needs_the_token(monkeypatch):
    """The terminal chat and the check read the same settings with no token set."""
    monkeypatch.setenv("CHIMEIN_CHATTINESS", "1")
    settings = load_settings()
    assert settings.discord_token is None and settings.chattiness == 1.0
    with pytest.raises(SettingsError, match="DISCORD_TOKEN: not set"):
        load_settings(require_token=True)


def test_default_chattiness_is_the_adapters_unless_set(monkeypatch):
    assert load_settings().chattiness is None
    assert load_settings().default_chattiness({"speak_threshold": 0.8}) == pytest.approx(0.2)
    assert load_settings().default_chattiness({}) == pytest.approx(1 - SPEAK_THRESHOLD)
    monkeypatch.setenv("CHIMEIN_CHATTINESS", "0.6")
    assert load_settings().default_chattiness({"speak_threshold": 0.8}) == 0.6


def test_flags_override_the_environment_under_the_same_names(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("CHIMEIN_CHATTINESS=0.1\nCHIMEIN_MODEL=from/dotenv\n")
    monkeypatch.setenv("CHIMEIN_WINDOW_TOKENS", "512")
    parser = argparse.ArgumentParser()
    add_setting_flags(parser, ["chattiness", "window_tokens", "model"])
    assert "(sets CHIMEIN_CHATTINESS)" in " ".join(parser.format_help().split())
    args = parser.parse_args(["--chattiness", "0.9"])
    settings = load_settings(**setting_overrides(args))
    assert (settings.chattiness, settings.window_tokens, settings.model) == (0.9, 512, "from/dotenv")
    with pytest.raises(SettingsError, match="CHIMEIN_WINDOW_TOKENS"):
        load_settings(**setting_overrides(parser.parse_args(["--window-tokens", "5"])))


@pytest.mark.parametrize("placeholder", ["your-token-here", "changeme", "<token>", "  ", "YOUR_BOT_TOKEN"])
def test_placeholder_token_is_refused(monkeypatch, placeholder):
    monkeypatch.setenv("DISCORD_TOKEN", placeholder)
    with pytest.raises(SettingsError, match="DISCORD_TOKEN"):
        load_settings()


def test_token_is_secret_and_stripped(monkeypatch):
    monkeypatch.setenv("DISCORD_TOKEN", f" {REAL_LOOKING_TOKEN}\n")
    settings = load_settings()
    assert settings.discord_token.get_secret_value() == REAL_LOOKING_TOKEN
    assert REAL_LOOKING_TOKEN not in repr(settings)


def test_values_from_the_environment(monkeypatch):
    monkeypatch.setenv("DISCORD_TOKEN", REAL_LOOKING_TOKEN)
    monkeypatch.setenv("CHIMEIN_CHANNELS", "111, 222,333")
    monkeypatch.setenv("CHIMEIN_BOT_NAMES", "Sage, sagebot")
    monkeypatch.setenv("CHIMEIN_CHATTINESS", "0.2")
    monkeypatch.setenv("CHIMEIN_ADAPTER", "none")
    monkeypatch.setenv("CHIMEIN_LOG_LEVEL", "debug")
    settings = load_settings()
    assert settings.channels == {111, 222, 333}
    assert settings.bot_names == ("Sage", "sagebot")
    assert settings.chattiness == 0.2
    assert settings.adapter_arg is None
    assert settings.log_level == "DEBUG"


def test_dotenv_file_is_read(tmp_path):
    (tmp_path / ".env").write_text(f"DISCORD_TOKEN={REAL_LOOKING_TOKEN}\nCHIMEIN_WINDOW_TOKENS=512\n")
    assert load_settings().window_tokens == 512


@pytest.mark.parametrize("variable, value, problem", [
    ("CHIMEIN_CHATTINESS", "1.5", "CHIMEIN_CHATTINESS"),
    ("CHIMEIN_CHANNELS", "general", "channel ids must be numbers"),
    ("CHIMEIN_WINDOW_TOKENS", "10", "CHIMEIN_WINDOW_TOKENS"),
])
def test_bad_values_name_the_variable(monkeypatch, variable, value, problem):
    monkeypatch.setenv("DISCORD_TOKEN", REAL_LOOKING_TOKEN)
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=problem):
        load_settings()


def _example_entries() -> dict[str, str]:
    entries = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if match := re.fullmatch(r"([A-Z_]+)=(.*)", line.strip()):
            entries[match[1]] = match[2]
    return entries


def test_env_example_lists_every_setting_and_nothing_else():
    assert set(_example_entries()) == set(env_names().values())


def test_env_example_values_are_the_defaults():
    """Copying .env.example and filling in the token gives the documented defaults."""
    from_example = Settings(_env_file=str(ENV_EXAMPLE), DISCORD_TOKEN=REAL_LOOKING_TOKEN)
    defaults = Settings(_env_file=None, DISCORD_TOKEN=REAL_LOOKING_TOKEN)
    assert from_example == defaults


def test_env_example_token_is_refused_as_is():
    with pytest.raises(SettingsError, match="placeholder"):
        load_settings(_env_file=str(ENV_EXAMPLE))


def test_every_setting_is_commented_in_the_example():
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.fullmatch(r"[A-Z_]+=.*", line):
            assert i > 0 and lines[i - 1].startswith("#"), f"{line} has no comment above it"
