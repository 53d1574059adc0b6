"""Shared fixtures: one real embedded model per test session.

The embedded SmolLM2-135M runs on this CPU in seconds, so tests use the real
model, tokenizer and chat template wherever the model is part of what is tested.
Loading happens once per session; tests that need a different window size build
a second ``Engine`` around the same loaded weights.
"""

from __future__ import annotations

import pytest

from models.turns import Turn


@pytest.fixture(scope="session")
def loaded():
    """The embedded base model and tokenizer, bare (no adapter), loaded once."""
    from models.loading import load_model

    return load_model("embedded", adapter=None)


@pytest.fixture(scope="session")
def engine(loaded):
    """An engine on the embedded base model with the default 1024-token window."""
    from models.engine import Engine

    return Engine(loaded.model, loaded.tokenizer,
                  info={"model": "embedded", "adapter": None, "device": loaded.device, "dtype": loaded.dtype})


@pytest.fixture(scope="session")
def shipped_engine():
    """The embedded model with the shipped adapter, loaded the way the bot and bot chat load it
    (adapter merged; ``describe()`` carries the adapter's speak threshold). Loaded once."""
    from models.loading import load_engine

    return load_engine("embedded", "auto")


@pytest.fixture(scope="session")
def tokenizer(loaded):
    return loaded.tokenizer


@pytest.fixture
def clean_environment(monkeypatch, tmp_path):
    """A temporary working directory (so no stray .env is read) and none of Chime In's
    settings variables set; returns that directory."""
    from bot.settings import env_names

    monkeypatch.chdir(tmp_path)
    for variable in env_names().values():
        monkeypatch.delenv(variable, raising=False)
    return tmp_path


def long_conversation(messages: int = 60) -> list[Turn]:
    """A multi-user chat with a few bot answers, long enough to slide a small window several times."""
    people = ["Ana", "Bo", "Chidi", "Dee"]
    lines = [
        "anyone watching the game tonight?", "yeah at 8, pizza at mine?", "what's the capital of peru",
        "lima i think", "ok who's bringing drinks", "i can grab some soda", "@assistant how far is the moon",
        "lol nerd", "my assistant manager kept me late again", "ugh that sucks", "did you finish the essay",
        "not yet, due friday right?", "yep friday noon", "anyone know how many ounces in a pound",
        "thx bot", "the bot is weirdly good at this", "brb dog needs a walk", "back", "what did i miss",
        "nothing much lol 😂",
    ]
    turns = []
    for i in range(messages):
        turns.append(Turn.user(people[i % len(people)], lines[i % len(lines)] + f" ({i})", turn_id=i))
        if i % 7 == 6:
            turns.append(Turn.assistant(f"Sure, here is a short answer number {i}.", turn_id=f"a{i}"))
    return turns
