"""``docker compose config`` without a Docker engine, for the deploy tests.

There is no Docker engine or Compose plugin here, so this does what ``config``
does for the features these files use: pick the files a command names (``-f``,
else ``COMPOSE_FILE``, else ``docker-compose.yml`` and an override file), read
each as YAML with Compose's ``!reset``/``!override`` tags, interpolate
``${VAR}``, ``${VAR:-default}`` and ``${VAR:?error}`` from the environment, merge
the files in order, and hand the result to a strict parser of the Compose
specification (the ``compose-spec`` package), which rejects unknown keys and
values of the wrong type. On top of that it checks what ``config`` checks
against the disk: named volumes are declared, build contexts and Dockerfiles
exist, a build ``target`` is a stage of the Dockerfile and build args are
declared with ``ARG``.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml
from compose_spec import PyCompose

DEFAULT_FILES = ("docker-compose.yml", "docker-compose.override.yml")
# Sequences Compose replaces instead of appending to when a later file sets them.
REPLACED_SEQUENCES = {"command", "entrypoint", "profiles", "test"}


class ComposeError(Exception):
    """What ``docker compose config`` would print before exiting 1."""


class _Reset:
    """``!reset``: drop the value merged so far."""


class _Override:
    def __init__(self, value) -> None:
        self.value = value


class ComposeLoader(yaml.SafeLoader):
    """YAML as Compose reads it: ``!reset`` / ``!override`` are Compose's merge tags."""


ComposeLoader.add_constructor("!reset", lambda loader, node: _Reset())
ComposeLoader.add_constructor(
    "!override", lambda loader, node: _Override(
        loader.construct_mapping(node, deep=True) if isinstance(node, yaml.MappingNode)
        else loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode)
        else loader.construct_scalar(node)))


def load_file(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=ComposeLoader) or {}


# -- the command line -------------------------------------------------------------------


def parse_command(line: str) -> tuple[list[str], list[str], str, list[str]]:
    """``docker compose [-f F]... [--profile P]... SUBCOMMAND ARGS`` -> (files, profiles, subcommand, args)."""
    words = shlex.split(line)
    if words[:2] != ["docker", "compose"]:
        raise ValueError(f"not a docker compose command: {line}")
    files, profiles, rest = [], [], words[2:]
    while rest and rest[0].startswith("-"):
        flag = rest.pop(0)
        if flag in ("-f", "--file"):
            files.append(rest.pop(0))
        elif flag == "--profile":
            profiles.append(rest.pop(0))
        elif flag in ("-p", "--project-name", "--env-file"):
            rest.pop(0)
        else:
            raise ValueError(f"global flag {flag} is not handled here: {line}")
    return files, profiles, rest[0] if rest else "", rest[1:]


def files_for(project: Path, files: list[str], environment: dict[str, str]) -> list[Path]:
    if files:
        return [project / f for f in files]
    if environment.get("COMPOSE_FILE"):
        return [project / f for f in environment["COMPOSE_FILE"].split(":")]
    return [project / f for f in DEFAULT_FILES if (project / f).exists()]


# -- interpolation and merging --------------------------------------------------------------

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]*)\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?", re.DOTALL)


def interpolate(value, environment: dict[str, str]):
    if isinstance(value, dict):
        return {k: interpolate(v, environment) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environment) for v in value]
    if isinstance(value, _Override):
        return _Override(interpolate(value.value, environment))
    if not isinstance(value, str):
        return value
    return _VARIABLE.sub(lambda match: _substitute(match, environment), value)


def _substitute(match: re.Match, environment: dict[str, str]) -> str:
    if match[0] == "$$":
        return "$"
    if match["plain"]:
        return environment.get(match["plain"], "")
    braced = _BRACED.fullmatch(match["braced"])
    if braced is None:
        raise ComposeError(f"invalid interpolation format for {match[0]!r}")
    name, op, arg = braced["name"], braced["op"], braced["arg"] or ""
    value = environment.get(name)
    unset = value is None or (op is not None and op.startswith(":") and value == "")
    if op in (":-", "-"):
        return arg if unset else value
    if op in (":?", "?"):
        if unset:
            raise ComposeError(f"required variable {name} is missing a value: {arg}")
        return value
    if op in (":+", "+"):
        return "" if unset else arg
    return value or ""


def merge(base, override, key: str = ""):
    if isinstance(override, _Reset):
        return None
    if isinstance(override, _Override):
        return override.value
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for k, v in override.items():
            merged[k] = merge(base.get(k), v, k) if k in base else merge(None, v, k)
            if merged[k] is None and isinstance(v, _Reset):
                del merged[k]
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in REPLACED_SEQUENCES:
        return base + [item for item in override if item not in base]
    if isinstance(override, dict):
        return {k: merge(None, v, k) for k, v in override.items() if not isinstance(v, _Reset)}
    return override


# -- config ------------------------------------------------------------------------------


def config(project: Path, files: list[str], environment: dict[str, str], profiles: list[str] = ()) -> dict:
    """The merged model ``docker compose -f FILES config`` prints; raises ComposeError where it fails."""
    paths = files_for(project, files, environment)
    if not paths:
        raise ComposeError("no configuration file provided: not found")
    merged: dict = {}
    for path in paths:
        if not path.exists():
            raise ComposeError(f"open {path}: no such file or directory")
        document = interpolate(load_file(path), environment)
        document = {k: v for k, v in document.items() if not str(k).startswith("x-")}
        merged = merge(merged, document)
    try:
        PyCompose.from_yaml(yaml.safe_dump(merged, sort_keys=False)).validate()
    except ValueError as error:
        raise ComposeError(f"validating {', '.join(p.name for p in paths)}: {error}") from None
    _check_against_disk(project, merged)
    return merged


def _check_against_disk(project: Path, model: dict) -> None:
    declared = set(model.get("volumes") or {})
    for name, service in model.get("services", {}).items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
            if source and not source.startswith((".", "/", "~")) and source not in declared:
                raise ComposeError(f"service {name!r} refers to undefined volume {source}: invalid compose project")
        build = service.get("build")
        if build is None:
            continue
        context = project / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
        if not dockerfile.is_file():
            raise ComposeError(f"service {name!r}: no Dockerfile at {dockerfile}")
        if isinstance(build, dict):
            stages, arguments = dockerfile_stages_and_args(dockerfile)
            if build.get("target") and build["target"] not in stages:
                raise ComposeError(f"service {name!r}: target stage {build['target']!r} not found in {dockerfile}")
            unknown = set(build.get("args") or {}) - arguments
            if unknown:
                raise ComposeError(f"service {name!r}: build args {sorted(unknown)} are not ARGs of {dockerfile}")


def dockerfile_stages_and_args(dockerfile: Path) -> tuple[set[str], set[str]]:
    text = dockerfile.read_text()
    stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.MULTILINE | re.IGNORECASE))
    arguments = set(re.findall(r"^ARG\s+([A-Za-z_][A-Za-z0-9_]*)", text, re.MULTILINE))
    return stages, arguments


def documented_commands(text: str) -> list[str]:
    """Every ``docker compose ...`` command written in ``text`` (a doc or a compose file's comments)."""
    commands = []
    for match in re.finditer(r"docker compose(?: [^\s`#|&;]+)*", text):
        command = match[0].strip()
        if command != "docker compose":
            commands.append(command)
    return commands
