"""docs/api.md is generated from the apps' OpenAPI: it must match what the code serves today."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gen_api_docs.py"
API_DOC = ROOT / "docs" / "api.md"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_api_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gen_api_docs", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    return _load_generator()


@pytest.fixture(scope="module")
def rendered(generator: ModuleType) -> str:
    return str(generator.render())


def test_api_reference_is_up_to_date(rendered: str) -> None:
    current = API_DOC.read_text(encoding="utf-8") if API_DOC.exists() else ""
    assert current == rendered, "docs/api.md is stale: run scripts/gen_api_docs.py"


def _documented(text: str) -> dict[str, set[str]]:
    """path -> credentials named in its rows."""
    rows: dict[str, set[str]] = {}
    for match in re.finditer(r"^\| [A-Z, ]+ \| `([^`]+)` \| [^|]+ \| .*? \| ([a-zA-Z ]+) \|$", text, re.M):
        rows.setdefault(match.group(1), set()).add(match.group(2))
    return rows


def test_every_fhs_route_is_listed_with_the_credential_it_needs(generator: ModuleType, rendered: str) -> None:
    documented = _documented(rendered)
    paths = generator.build_fhs_app().openapi()["paths"]
    assert set(paths) <= set(documented)
    for path in paths:
        if path.startswith("/operator/v1/"):
            assert documented[path] == {"operator secret"}, path
        elif path.startswith("/member/v1/"):
            assert documented[path] == {"member JWT"}, path
    assert documented["/fhs/v1/federations/{fid}/events"] == {"peer assertion"}
    assert documented["/.well-known/jwks.json"] == {"none"}


def test_resource_routes_need_an_invocation_token_except_open_paths(rendered: str) -> None:
    from scission_service.resource.auth import OPEN_PATHS

    resource = rendered.split("## Resource service", 1)[1]
    documented = _documented(resource)
    assert "/healthz" in OPEN_PATHS
    for path in OPEN_PATHS:
        assert documented.pop(path) == {"none"}, path
    assert "/segments/{model}/run" in documented
    assert all(creds == {"invocation token"} for creds in documented.values())


def test_check_mode_reports_a_stale_file(
    generator: ModuleType,
    rendered: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(generator, "render", lambda: rendered)
    stale = tmp_path / "api.md"
    stale.write_text(rendered.replace("member JWT", "nothing", 1), encoding="utf-8")
    assert generator.main(["--check", "--output", str(stale)]) == 1
    assert "run scripts/gen_api_docs.py" in capsys.readouterr().err
    assert generator.main(["--output", str(stale)]) == 0
    assert generator.main(["--check", "--output", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == rendered


def test_every_fhs_setting_is_documented_in_the_reference(rendered: str) -> None:
    from fhs.settings import Settings

    for name, field in Settings.model_fields.items():
        assert field.description, f"Settings.{name} has no docstring (docs/api.md shows it)"
        assert f"| `FHS_{name.upper()}` |" in rendered
