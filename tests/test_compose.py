"""compose/: the deployment validates against the Compose Specification and runs only commands our CLI has.

Docker does not run on our machines, so these tests read the files the way ``docker compose config`` does:
YAML with anchors and merge keys, compose's variable interpolation (values from ``compose/.env.example``),
the dev override merged in, then the Compose Specification's JSON schema (vendored in
``compose/schema/compose-spec.json``, provenance in ``compose/schema/README.md``). Every command a container
runs is parsed by our real click commands, and the settings it would start with are built by our real
settings classes, so an option, variable or value that does not exist fails here.
"""

from __future__ import annotations

import ast
import copy
import json
import re
import shlex
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from fhs.cli import main as fhs_cli
from fhs.idp import IdPConfig
from fhs.proxy.ssrf import parse_allowlist
from fhs.settings import Settings
from fhs.store import open_store
from scission_service.cli import cli as scission_cli
from scission_service.resource.cli import build_settings
from scission_service.resource.settings import ResourceSettings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_DIR = ROOT / "compose"
BASE = COMPOSE_DIR / "compose.yml"
DEV = COMPOSE_DIR / "compose.dev.yml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
SCHEMA = COMPOSE_DIR / "schema" / "compose-spec.json"
DOCKERFILE = ROOT / "Dockerfile"

#: Our console scripts (pyproject [project.scripts]) and the click command behind each.
PROGRAMS: dict[str, click.Command] = {"fhs": fhs_cli, "scission": scission_cli}
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|TOKEN|KEY)")
DOMAINS = ("a", "b")


# --------------------------------------------------------------------------- compose's interpolation


class InterpolationError(ValueError):
    """A required variable (``${VAR:?message}`` / ``${VAR?message}``) has no value."""


_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<named>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<invalid>))"
)


def _substitute(text: str, env: Mapping[str, str]) -> str:
    """One string with compose's rules: ``$$``, ``$V``, ``${V}``, ``${V:-d}``, ``${V-d}``, ``${V:?e}``, …"""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        if match["invalid"] is not None and match["braced"] is None and match["named"] is None:
            raise InterpolationError(f"invalid interpolation in {text!r} at {match.start()}")
        name = match["braced"] or match["named"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        empty = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if empty else str(value)
        if op in (":?", "?"):
            if empty:
                raise InterpolationError(f"required variable {name} is missing a value: {arg}")
            return str(value)
        if op in (":+", "+"):
            return "" if empty else arg
        return value or ""

    return _REFERENCE.sub(replace, text)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string value (not keys, as compose does) of a loaded compose document."""
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env) for value in node]
    if isinstance(node, str):
        return _substitute(node, env)
    return node


def strings(node: Any) -> Iterator[str]:
    """Every string value of a loaded compose document (compose interpolates values, not keys or comments)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


def references(path: Path) -> Iterator[tuple[str, str | None]]:
    """Every ``(variable, operator)`` a compose file's values refer to (``$$`` escapes are not references)."""
    for text in strings(load(path)):
        for match in _REFERENCE.finditer(text):
            name = match["braced"] or match["named"]
            if name:
                yield name, match["op"]


def read_env_file(path: Path) -> tuple[dict[str, str], set[str]]:
    """The ``KEY=VALUE`` lines of an env file, and the names of its commented-out ``# KEY=…`` lines."""
    values: dict[str, str] = {}
    commented: set[str] = set()
    for line in path.read_text().splitlines():
        line = line.strip()
        optional = re.match(r"^#\s*([A-Z][A-Z0-9_]*)=", line)
        if optional:
            commented.add(optional[1])
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not KEY=VALUE"
        values[key.strip()] = value.strip().strip("'\"")
    return values, commented


# --------------------------------------------------------------------------- loading and merging


def load(path: Path) -> dict[str, Any]:
    """A compose file as YAML (anchors and ``<<`` merge keys resolved)."""
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path.name} is not a YAML mapping"
    return document


_REPLACED = {"command", "entrypoint", "test"}


def merge(base: Any, override: Any, key: str = "") -> Any:
    """Compose's override merge for what our files use: mappings merge, command/test replace, lists union."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for name, value in override.items():
            merged[name] = merge(base[name], value, name) if name in base else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(override, list) and key not in _REPLACED:
        return base + [item for item in override if item not in base]
    return copy.deepcopy(override)


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    values, _ = read_env_file(ENV_EXAMPLE)
    return values


@pytest.fixture(scope="module")
def base(env: dict[str, str]) -> dict[str, Any]:
    return interpolate(load(BASE), env)


@pytest.fixture(scope="module")
def dev(env: dict[str, str]) -> dict[str, Any]:
    return interpolate(load(DEV), env)


@pytest.fixture(scope="module")
def merged(base: dict[str, Any], dev: dict[str, Any]) -> dict[str, Any]:
    return merge(base, dev)


def services(model: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return model["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (compose accepts a list of KEY=VALUE too)."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        return dict(item.partition("=")[::2] for item in raw)
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def networks_of(service: dict[str, Any]) -> set[str]:
    raw = service.get("networks") or []
    return set(raw) if isinstance(raw, list) else set(raw.keys())


def argv_of(service: dict[str, Any]) -> list[str] | None:
    """The argv a service runs (our image has no ENTRYPOINT, so the command is the whole argv)."""
    if "entrypoint" in service:
        raise AssertionError("our services use `command`, not `entrypoint`")
    command = service.get("command")
    if command is None:
        return None
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def ours(service: dict[str, Any]) -> bool:
    """Whether a service runs the FedScission image."""
    return str(service.get("image", "")).startswith("fedscission:")


# --------------------------------------------------------------------------- the CLI check


def parse_command(argv: list[str]) -> tuple[list[str], click.Context]:
    """Parse ``argv`` with our real click commands, converting every value; raise click errors if wrong."""
    program, *rest = argv
    if program not in PROGRAMS:
        raise click.UsageError(f"{program!r} is not one of our programs {sorted(PROGRAMS)}")
    command = PROGRAMS[program]
    path = [program]
    context = click.Context(command, info_name=program)
    while isinstance(command, click.Group):
        if not rest or rest[0].startswith("-"):
            raise click.UsageError(f"{' '.join(path)} needs a subcommand")
        sub = command.get_command(context, rest[0])
        if sub is None:
            raise click.UsageError(f"{' '.join(path)} has no command {rest[0]!r}")
        path.append(rest.pop(0))
        command = sub
        context = click.Context(command, info_name=path[-1], parent=context)
    leaf = command.make_context(path[-1], list(rest), parent=context.parent)
    return path, leaf


def test_the_command_parser_rejects_what_our_cli_rejects() -> None:
    """The checker itself: unknown commands, unknown options and bad values fail, real ones pass."""
    path, ctx = parse_command(["fhs", "serve", "--port", "8080"])
    assert path == ["fhs", "serve"] and ctx.params["port"] == 8080
    with pytest.raises(click.UsageError):
        parse_command(["fhs", "serve", "--no-such-option", "x"])
    with pytest.raises(click.UsageError):
        parse_command(["fhs", "server"])
    with pytest.raises(click.BadParameter):
        parse_command(["fhs", "serve", "--port", "eighty"])
    with pytest.raises(click.UsageError):
        parse_command(["scission", "resource", "serve", "--tier", "mainframe"])
    with pytest.raises(click.UsageError):
        parse_command(["docker", "run"])


def test_our_programs_are_the_installed_console_scripts() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(PROGRAMS) == set(scripts)


def test_every_command_the_deployment_runs_exists_in_our_cli(merged: dict[str, Any]) -> None:
    """Each argv (base and dev override) parses with its options, and `<prefix> --help` runs."""
    runner = CliRunner()
    checked = 0
    for name, service in services(merged).items():
        if not ours(service):
            continue
        argv = argv_of(service)
        assert argv, f"service {name} relies on the image's default command; make it explicit"
        try:
            path, _ = parse_command(argv)
        except click.ClickException as exc:
            pytest.fail(f"service {name}: `{' '.join(argv)}` is not a valid command: {exc.format_message()}")
        result = runner.invoke(PROGRAMS[path[0]], [*path[1:], "--help"])
        assert result.exit_code == 0, f"service {name}: `{' '.join(path)} --help` failed: {result.output}"
        checked += 1
    assert checked == 7  # fhs-a, fhs-b, idp-a, idp-b and three resource nodes


def test_the_image_default_command_exists_in_our_cli() -> None:
    text = DOCKERFILE.read_text()
    cmd = re.findall(r"^CMD\s+(\[.*\])\s*$", text, re.MULTILINE)
    assert len(cmd) == 1, "the Dockerfile has one exec-form CMD"
    assert not re.search(r"^ENTRYPOINT", text, re.MULTILINE), "compose's commands assume no ENTRYPOINT"
    parse_command(json.loads(cmd[0]))


# --------------------------------------------------------------------------- the schema


def test_the_vendored_schema_is_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"
    assert schema["$id"] == "compose_spec.json"
    jsonschema.Draft7Validator.check_schema(schema)
    assert "Compose Specification" in (SCHEMA.parent / "README.md").read_text()


@pytest.mark.parametrize("which", ["base", "dev", "merged"])
def test_files_validate_against_the_compose_specification(which: str, request: pytest.FixtureRequest) -> None:
    model = request.getfixturevalue(which)
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    problems = [
        f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in validator.iter_errors(model)
    ]
    assert not problems, "\n".join(problems)


def test_the_schema_check_catches_a_misspelt_key(base: dict[str, Any]) -> None:
    broken = copy.deepcopy(base)
    broken["services"]["fhs-a"]["healthchek"] = broken["services"]["fhs-a"].pop("healthcheck")
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    assert any("healthchek" in error.message for error in validator.iter_errors(broken))


# --------------------------------------------------------------------------- variables and secrets


def test_every_secret_is_required_and_fails_when_missing(env: dict[str, str]) -> None:
    """Secrets use ${VAR:?message}; without one, interpolation stops and names it."""
    raw = load(BASE)
    found = list(references(BASE))
    secrets = {name for name, _ in found if SECRET_NAME.search(name)}
    assert {"REDIS_A_PASSWORD", "REDIS_B_PASSWORD", "IDP_A_FEDADMIN_SECRET", "IDP_B_OWNER_SECRET"} <= secrets
    for name, op in found:
        if name in secrets:
            assert op == ":?", f"${{{name}}} is a secret: write it ${{{name}:?message}} (found op {op!r})"
    required = {name for name, op in found if op == ":?"}
    for name in sorted(required):
        without = {key: value for key, value in env.items() if key != name}
        with pytest.raises(InterpolationError, match=name):
            interpolate(raw, without)
        with pytest.raises(InterpolationError, match=name):
            interpolate(raw, {**without, name: ""})


def test_env_example_lists_every_variable_and_only_those() -> None:
    values, commented = read_env_file(ENV_EXAMPLE)
    used = {name for path in (BASE, DEV) for name, _ in references(path)}
    required = {name for path in (BASE, DEV) for name, op in references(path) if op == ":?"}
    assert required <= set(values), f"set these in .env.example: {sorted(required - set(values))}"
    assert used <= set(values) | commented, (
        f"document these in .env.example: {sorted(used - set(values) - commented)}"
    )
    assert set(values) | commented <= used, f"unused in compose: {sorted((set(values) | commented) - used)}"
    for name in values:
        if SECRET_NAME.search(name):
            assert values[name].startswith("change-me"), (
                f"{name} in .env.example must be a change-me placeholder"
            )


def test_no_secret_value_is_written_into_the_files() -> None:
    """Secrets come from variables: secret-named environment, Redis URL passwords, IdP client secrets."""
    for path in (BASE, DEV):
        raw = load(path)
        for name, service in raw.get("services", {}).items():
            for key, value in environment(service).items():
                if SECRET_NAME.search(key):
                    assert value.startswith("${"), f"{path.name}: {name} sets {key} to a literal"
                password = urlsplit(value).password if value.startswith("redis") else None
                assert password is None or password.startswith("${"), f"{path.name}: {name} {key}"
        for config in raw.get("configs", {}).values():
            for secret in re.findall(r'"secret":\s*"([^"]*)"', config.get("content", "")):
                assert secret.startswith("${"), f"{path.name}: a client secret is a literal"
        assert not any("change-me" in text for text in strings(raw))


# --------------------------------------------------------------------------- health and ordering


def test_every_service_has_a_healthcheck(merged: dict[str, Any]) -> None:
    for name, service in services(merged).items():
        check = service.get("healthcheck")
        assert check and not check.get("disable"), f"service {name} has no healthcheck"
        test = check["test"]
        assert test != ["NONE"] and test[0] in ("CMD", "CMD-SHELL"), f"service {name}: healthcheck {test!r}"
        if test[:3] == ["CMD", "python", "-c"]:
            ast.parse(test[3])  # the one-liner is valid Python


def test_the_healthchecks_probe_the_port_each_service_listens_on(merged: dict[str, Any]) -> None:
    for name, service in services(merged).items():
        argv = argv_of(service) if ours(service) else None
        if not argv:
            continue
        _, ctx = parse_command(argv)
        port = ctx.params.get("port")
        probe = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/" in probe, f"service {name} listens on {port} but probes {probe!r}"


def test_every_dependency_waits_for_health(merged: dict[str, Any]) -> None:
    all_services = services(merged)
    edges = 0
    for name, service in all_services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"service {name}: use depends_on with condition: service_healthy"
        for target, spec in depends.items():
            assert target in all_services, f"service {name} depends on unknown {target}"
            assert spec.get("condition") == "service_healthy", f"{name} -> {target}: {spec!r}"
            assert "healthcheck" in all_services[target]
            # a service started by plain `up` must not wait for one that only a profile starts
            assert not all_services[target].get("profiles") or service.get("profiles"), f"{name} -> {target}"
            edges += 1
    assert edges == 9  # per domain: FHS -> Redis, IdP; LB -> FHS; each resource node -> LB


# --------------------------------------------------------------------------- the topology


def test_each_domain_runs_replicated_fhs_on_one_persistent_redis(base: dict[str, Any]) -> None:
    all_services = services(base)
    for domain in DOMAINS:
        fhs, redis = all_services[f"fhs-{domain}"], all_services[f"redis-{domain}"]
        assert fhs["deploy"]["replicas"] >= 2
        assert "container_name" not in fhs and "ports" not in fhs  # replicas cannot share either
        store = urlsplit(environment(fhs)["FHS_STORE_URL"])
        assert (store.scheme, store.hostname, store.port) == ("redis", f"redis-{domain}", 6379)
        assert store.password, "the FHS authenticates to Redis"
        open_store(environment(fhs)["FHS_STORE_URL"])  # our Redis store accepts the URL
        command = " ".join(redis["command"])
        assert "--appendonly yes" in command and "requirepass $REDIS_PASSWORD" in command
        assert f"redis-{domain}-data:/data" in redis["volumes"]
        lb = all_services[f"fhs-{domain}-lb"]
        assert environment(lb)["FHS_UPSTREAM"] == f"fhs-{domain}:8080"


def test_fhs_settings_come_only_from_variables_that_exist(
    base: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every FHS_* variable is a Settings field; with them the CLI builds valid settings and allow-list."""
    known = {f"FHS_{name.upper()}" for name in Settings.model_fields}
    all_services = services(base)
    for domain in DOMAINS:
        service = all_services[f"fhs-{domain}"]
        variables = environment(service)
        assert set(variables) <= known, f"fhs-{domain}: unknown {sorted(set(variables) - known)}"
        with monkeypatch.context() as patch:
            for key, value in variables.items():
                patch.setenv(key, value)
            _, ctx = parse_command(argv_of(service) or [])
            p = ctx.params
            settings = Settings(
                fhs_id=p["fhs_id"],
                host=p["host"],
                port=p["port"],
                public_url=p["public_url"],
                data_dir=p["data_dir"],
                store_url=p["store_url"],
                proxy_allowlist=list(p["allowlist"]),
            )
        resources = {n for n in all_services if n.startswith(f"resource-{domain}-")}
        allow = parse_allowlist(settings.proxy_allowlist)
        assert set(allow.hostnames) == resources and not allow.networks, "allow exactly the domain's nodes"
        assert settings.fhs_id == f"fhs-{domain}"
        assert settings.public_url == f"http://fhs-{domain}-lb:8080"


def test_resource_nodes_start_with_valid_settings(
    merged: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each node's SCISSION_RESOURCE_* variables and options build ResourceSettings for its own domain."""
    known = {f"SCISSION_RESOURCE_{name.upper()}" for name in ResourceSettings.model_fields}
    tiers = {"resource-a-device": "device", "resource-a-edge": "edge", "resource-b-cloud": "cloud"}
    all_services = services(merged)
    assert {n for n in all_services if n.startswith("resource-")} == set(tiers)
    for name, tier in tiers.items():
        domain = name.split("-")[1]
        service = all_services[name]
        variables = environment(service)
        assert set(variables) <= known, f"{name}: unknown {sorted(set(variables) - known)}"
        with monkeypatch.context() as patch:
            for key, value in variables.items():
                patch.setenv(key, value)
            _, ctx = parse_command(argv_of(service) or [])
            overrides = {
                key: (list(value) or None) if isinstance(value, tuple) else value
                for key, value in ctx.params.items()
                if key not in ("config", "log_level", "fhs_jwks_file")
            }
            settings = build_settings(None, overrides)
        assert settings.tier == tier and settings.port == 8090 and settings.host == "0.0.0.0"
        assert settings.service_ids == [variables["SCISSION_RESOURCE_SERVICE_IDS"][2:-2]]
        assert settings.fhs_issuer == environment(all_services[f"fhs-{domain}"])["FHS_PUBLIC_URL"]
        assert urlsplit(settings.fhs_jwks_url).hostname == f"fhs-{domain}-lb"
        assert settings.models[0].application is not None
        assert service["profiles"] == ["resources"]


def test_the_dev_idp_configs_are_valid_and_match_their_fhs(base: dict[str, Any]) -> None:
    all_services = services(base)
    for domain in DOMAINS:
        config = IdPConfig.model_validate(json.loads(base["configs"][f"idp-{domain}-config"]["content"]))
        public_url = environment(all_services[f"fhs-{domain}"])["FHS_PUBLIC_URL"]
        assert config.clients and all(c.audiences == [public_url] for c in config.clients.values())
        issuer = urlsplit(config.issuer)
        _, ctx = parse_command(argv_of(all_services[f"idp-{domain}"]) or [])
        assert (issuer.hostname, issuer.port) == (f"idp-{domain}", ctx.params["port"])
        assert all(len(c.secret) >= 16 for c in config.clients.values())


def test_networks_keep_redis_idps_and_resource_nodes_private(base: dict[str, Any]) -> None:
    declared = base["networks"]
    for domain in DOMAINS:
        assert declared[f"{domain}-internal"]["internal"] is True
    assert not declared["federation"] or not declared["federation"].get("internal")
    for name, service in services(base).items():
        nets = networks_of(service)
        domain = name.split("-")[1]
        if name.startswith(("redis-", "idp-", "resource-")):
            assert nets == {f"{domain}-internal"}, f"{name} must sit on {domain}-internal only, not {nets}"
        else:
            assert nets == {f"{domain}-internal", "federation"}, f"{name}: {nets}"


def test_only_named_volumes_and_the_read_only_nginx_template_are_mounted(base: dict[str, Any]) -> None:
    declared = set(base["volumes"])
    for name, service in services(base).items():
        for mount in service.get("volumes", []):
            source, target, *mode = mount.split(":")
            if source.startswith("./"):
                assert (COMPOSE_DIR / source).is_file() and mode == ["ro"], f"{name}: {mount}"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"


def test_nothing_is_published_except_loopback_ports_in_the_dev_override(
    base: dict[str, Any], merged: dict[str, Any]
) -> None:
    assert all("ports" not in service for service in services(base).values())
    published = [(n, p) for n, s in services(merged).items() for p in s.get("ports", [])]
    assert {n for n, _ in published} == {"fhs-a-lb", "fhs-b-lb", "idp-a", "idp-b"}
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_the_dockerfile_builds_a_non_root_image_without_dev_extras() -> None:
    text = DOCKERFILE.read_text()
    assert re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)[-1] == "python:3.11-slim"
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert re.search(r"pip install \.(\s|$)", text) and "[dev]" not in text
    ignore = (ROOT / ".dockerignore").read_text()
    assert "**" in ignore.splitlines()  # allow-list context: no .venv, data or secrets are sent
