"""The container files (Dockerfile, .dockerignore, docker-compose.yml) agree with the code.

No Docker engine is needed: the files are parsed and checked against the settings and routes.
"""

from __future__ import annotations

import fnmatch
import json
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import pytest
import yaml
from sqlalchemy.engine import make_url

from bookchat.core.config import Environment, Settings
from bookchat.main import create_app
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent
SETTING_NAMES = {name.upper() for name in Settings.model_fields}
BACKING_SERVICES = ("postgres", "qdrant", "redis")
LIVENESS_PATH = "/api/v1/health/live"
FAKE_JWT_SECRET = "a-fixed-fake-secret-that-is-long-enough-for-hs256"

# --- helpers ---------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def service(name: str) -> dict[str, Any]:
    services = compose()["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    value = services[name]
    assert isinstance(value, dict)
    return value


def environment_of(name: str) -> dict[str, str]:
    """A service's `environment`, in either of Compose's two forms."""
    raw = service(name).get("environment", {})
    if isinstance(raw, list):
        return dict(item.split("=", 1) for item in raw)
    return {key: "" if value is None else str(value) for key, value in raw.items()}


class MissingVariable(Exception):
    pass


_VARIABLE = re.compile(
    r"\$\$"
    r"|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Resolve Compose's `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?msg}`, `$$`."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = variables.get(name)
        missing = current is None or (op is not None and op.startswith(":") and current == "")
        if not missing:
            return current or ""
        if op in (":?", "?"):
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-"):
            return arg
        return ""

    return _VARIABLE.sub(replace, value)


def app_settings(monkeypatch: pytest.MonkeyPatch, variables: Mapping[str, str]) -> Settings:
    """The settings the app container would read, given these variables in .env / the shell."""
    for key, value in environment_of("app").items():
        monkeypatch.setenv(key, interpolate(value, variables))
    return Settings(_env_file=None)


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, rest = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def arguments(keyword: str) -> list[str]:
    return [rest for word, rest in dockerfile() if word == keyword]


def runtime_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


# --- docker-compose.yml ----------------------------------------------------------------------


def test_compose_runs_the_app_on_postgres_qdrant_and_redis() -> None:
    data = compose()
    assert "version" not in data  # obsolete in the Compose specification
    assert set(data["services"]) == {"app", *BACKING_SERVICES}
    app = service("app")
    assert app["build"] == "."
    assert app["image"] == "bookchat"
    assert service("postgres")["image"] == "postgres:16"
    assert re.fullmatch(r"qdrant/qdrant:v1\.\d+\.\d+", service("qdrant")["image"])
    assert service("redis")["image"] == "redis:7"


def test_app_is_published_on_8000_and_waits_for_healthy_services() -> None:
    app = service("app")
    assert "8000:8000" in app["ports"]
    assert app["depends_on"] == {
        name: {"condition": "service_healthy"} for name in BACKING_SERVICES
    }
    for name in BACKING_SERVICES:
        check = service(name).get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck, so service_healthy never holds"
        assert check["test"][0] in ("CMD", "CMD-SHELL")


def test_backing_services_stay_off_the_host_and_keep_their_data() -> None:
    data = compose()
    for name in BACKING_SERVICES:
        assert "ports" not in service(name), f"{name} should not be published to the host"
    declared = set(data.get("volumes") or {})
    mounts = {name: service(name).get("volumes", []) for name in ("postgres", "qdrant")}
    for name, target in (("postgres", "/var/lib/postgresql/data"), ("qdrant", "/qdrant/storage")):
        named = [m.split(":")[0] for m in mounts[name] if m.split(":")[1] == target]
        assert named, f"{name} keeps {target} in no volume: its data dies with the container"
        assert named[0] in declared


def test_app_reads_an_optional_env_file() -> None:
    assert {"path": ".env", "required": False} in service("app")["env_file"]


def test_app_environment_names_only_real_settings() -> None:
    names = set(environment_of("app"))
    assert names, "the app service sets no environment"
    assert names <= SETTING_NAMES, f"not settings: {sorted(names - SETTING_NAMES)}"


def test_app_defaults_build_valid_production_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = app_settings(monkeypatch, {"JWT_SECRET": FAKE_JWT_SECRET})
    assert settings.environment is Environment.PRODUCTION
    assert settings.migrate_on_start is True
    assert settings.jwt_secret.get_secret_value() == FAKE_JWT_SECRET
    assert settings.qdrant_url == "http://qdrant:6333"
    assert settings.redis_url is not None
    assert make_url(settings.redis_url.get_secret_value()).host == "redis"
    database = make_url(settings.database_url.get_secret_value())
    assert database.drivername == "postgresql+asyncpg"
    assert database.host == "postgres"


@pytest.mark.parametrize("variables", [{}, {"POSTGRES_PASSWORD": "s3cret-from-env"}])
def test_app_logs_in_to_postgres_as_the_postgres_service_sets_it_up(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    variables = {"JWT_SECRET": FAKE_JWT_SECRET, **variables}
    settings = app_settings(monkeypatch, variables)
    postgres = {k: interpolate(v, variables) for k, v in environment_of("postgres").items()}
    database = make_url(settings.database_url.get_secret_value())
    assert database.username == postgres["POSTGRES_USER"]
    assert database.password == postgres["POSTGRES_PASSWORD"]
    assert database.database == postgres["POSTGRES_DB"]
    assert database.port == 5432
    if "POSTGRES_PASSWORD" in variables:
        assert database.password == variables["POSTGRES_PASSWORD"]


def test_compose_refuses_to_start_without_a_jwt_secret() -> None:
    secret = environment_of("app")["JWT_SECRET"]
    with pytest.raises(MissingVariable, match="JWT_SECRET"):
        interpolate(secret, {})
    assert interpolate(secret, {"JWT_SECRET": FAKE_JWT_SECRET}) == FAKE_JWT_SECRET


def test_app_stop_grace_outlasts_the_shutdown_timeout() -> None:
    default = Settings.model_fields["shutdown_timeout_seconds"].default
    assert seconds(service("app")["stop_grace_period"]) > default


# --- Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_builds_in_stages_on_python_311_slim() -> None:
    bases = [rest.split()[0] for rest in arguments("FROM")]
    assert len(bases) >= 2
    assert all(re.fullmatch(r"python:3\.11(\.\d+)?-slim-bookworm", base) for base in bases)
    uv_sources = [
        word.removeprefix("--from=")
        for rest in arguments("COPY")
        for word in rest.split()
        if word.startswith("--from=ghcr.io/astral-sh/uv")
    ]
    assert uv_sources, "uv does not come from its official image"
    for source in uv_sources:
        assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", source), "pin uv's version"


def test_dockerfile_installs_locked_runtime_dependencies_only() -> None:
    instructions = dockerfile()
    syncs = [i for i, (word, rest) in enumerate(instructions) if "uv sync" in rest]
    assert len(syncs) == 2
    for index in syncs:
        flags = instructions[index][1].split()
        assert {"--locked", "--no-dev", "--no-editable"} <= set(flags)
    first, second = syncs
    assert "--no-install-project" in instructions[first][1]
    assert "--no-install-project" not in instructions[second][1]
    copies_src = [
        i for i, (word, rest) in enumerate(instructions) if word == "COPY" and "src" in rest.split()
    ]
    assert copies_src
    assert first < copies_src[0] < second  # dependencies are cached apart from the code


def test_image_runs_as_a_non_root_user() -> None:
    users = [rest for word, rest in runtime_stage() if word == "USER"]
    assert users, "the runtime stage runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_image_serves_on_8000_and_checks_liveness() -> None:
    stage = runtime_stage()
    assert ("EXPOSE", "8000") in stage
    command = json.loads(next(rest for word, rest in stage if word == "CMD"))
    assert command[:2] == ["bookchat", "serve"]
    assert command[command.index("--host") + 1] == "0.0.0.0"  # noqa: S104 - reachable from outside
    assert command[command.index("--port") + 1] == "8000"
    check = next(rest for word, rest in stage if word == "HEALTHCHECK")
    assert f"http://127.0.0.1:8000{LIVENESS_PATH}" in check
    assert "curl" not in check  # neither curl nor wget is in the slim image
    assert "wget" not in check


async def test_the_healthcheck_path_answers_without_any_dependency(tmp_path: Path) -> None:
    # The app is not started (no lifespan, no database): liveness must not need them.
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path}/unused.db"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get(LIVENESS_PATH)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_image_defaults_point_at_its_book_and_its_data_volume() -> None:
    stage = runtime_stage()
    workdir = PurePosixPath(next(rest for word, rest in stage if word == "WORKDIR"))
    volumes = [PurePosixPath(v) for rest in arguments("VOLUME") for v in json.loads(rest)]
    assert volumes
    defaults = Settings(_env_file=None)
    database = make_url(defaults.database_url.get_secret_value()).database
    assert database is not None
    for relative in (database, defaults.qdrant_path, defaults.fastembed_cache_dir):
        assert relative is not None
        stored = workdir / relative
        assert any(stored.is_relative_to(volume) for volume in volumes), stored
    copies = [rest.split() for word, rest in stage if word == "COPY"]
    book = workdir / defaults.book_docs_dir
    assert any(
        parts[-2].rstrip("/") == defaults.book_docs_dir and workdir / parts[-1] == book
        for parts in copies
    ), f"the default BOOK_DOCS_DIR ({book}) is missing from the image"


def test_image_leaves_the_environment_to_the_operator() -> None:
    names = {
        pair.split("=", 1)[0] for rest in arguments("ENV") for pair in rest.split() if "=" in pair
    }
    assert "ENVIRONMENT" not in names  # production would refuse the default JWT secret
    assert "JWT_SECRET" not in names


def test_installed_package_carries_its_migrations() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    force_include = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert force_include.get("migrations") == "bookchat/_migrations"
    assert any("migrations" in rest.split()[0] for rest in arguments("COPY"))


# --- .dockerignore ---------------------------------------------------------------------------


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    result = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if fnmatch.fnmatch(path, pattern.removeprefix("!").removeprefix("**/")):
            result = not negated
    return result


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    patterns = dockerignore()
    for path in (".env", ".git", ".venv", "data", ".tools", "tests"):
        assert ignored(path, patterns), f"{path} would be sent to the Docker daemon"


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    patterns = dockerignore()
    sources = [
        word
        for rest in arguments("COPY")
        if "--from=" not in rest
        for word in rest.split()[:-1]
        if not word.startswith("--")
    ]
    assert "pyproject.toml" in sources
    for source in sources:
        assert not ignored(source.rstrip("/"), patterns), f"{source} is excluded from the context"
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which does not exist"
