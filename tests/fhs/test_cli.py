"""The `fhs` admin commands: dev IdP config, operator secret help, and clear errors (exit 2, no traceback)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fhs.cli import main
from fhs.identity.operator import OperatorSecret
from fhs.idp import load_idp_config


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def assert_config_error(result: Result, *fragments: str) -> None:
    """Exit status 2, a message naming the problem, and no Python traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    for fragment in fragments:
        assert fragment in result.output, result.output


def test_idp_init_writes_a_private_config_the_idp_loads(tmp_path: Path) -> None:
    out = tmp_path / "idp.json"
    result = run(
        "idp", "init", "--issuer", "http://127.0.0.1:9000", "--out", str(out),
        "--client", "alice:alice@example.org", "--client", "bob", "--audience", "http://127.0.0.1:8080",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    config = load_idp_config(out)
    assert config.clients["alice"].subject == "alice@example.org" and config.clients["bob"].subject == "bob"
    assert config.clients["alice"].secret != config.clients["bob"].secret
    assert config.clients["alice"].audiences == ["http://127.0.0.1:8080"]
    assert config.key_dir == tmp_path / "idp-keys"
    assert (
        f"curl -s -u alice:{config.clients['alice'].secret} -d grant_type=client_credentials" in result.output
    )
    assert "http://127.0.0.1:9000/token" in result.output


def test_idp_init_writes_toml_too_and_never_overwrites_without_force(tmp_path: Path) -> None:
    out = tmp_path / "idp.toml"
    assert (
        run(
            "idp", "init", "--issuer", "http://127.0.0.1:9000", "--out", str(out), "--client", 'q:a "b"'
        ).exit_code
        == 0
    )
    first = load_idp_config(out).clients["q"]
    assert first.subject == 'a "b"'
    again = run("idp", "init", "--issuer", "http://127.0.0.1:9000", "--out", str(out), "--client", "q")
    assert_config_error(again, "exists", "--force")
    assert load_idp_config(out).clients["q"].secret == first.secret
    forced = run(
        "idp", "init", "--issuer", "http://127.0.0.1:9000", "--out", str(out), "--client", "q", "--force"
    )
    assert forced.exit_code == 0 and load_idp_config(out).clients["q"].secret != first.secret


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--client", "alice"], "--out x.yaml"),
        ([], "at least one --client"),
        (["--client", "a b:c"], "bad --client"),
        (["--client", "a:x", "--client", "a:y"], "client names repeat: a"),
    ],
)
def test_idp_init_refuses_bad_options(tmp_path: Path, args: list[str], fragment: str) -> None:
    out = "x.yaml" if fragment.startswith("--out") else str(tmp_path / "x.json")
    result = CliRunner().invoke(
        main, ["idp", "init", "--issuer", "http://127.0.0.1:9000", "--out", out, *args]
    )
    assert_config_error(result, fragment)


def test_idp_init_refuses_a_bad_issuer(tmp_path: Path) -> None:
    result = run("idp", "init", "--issuer", "ftp://x", "--out", str(tmp_path / "i.json"), "--client", "a")
    assert_config_error(result, "issuer")
    assert not (tmp_path / "i.json").exists()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"issuer": "http://127.0.0.1:9000", ', "Expecting"),
        ('{"issuer": "http://127.0.0.1:9000", "key_dir": "k", "surprise": 1}', "surprise"),
        ('{"issuer": "not a url", "key_dir": "k"}', "issuer"),
        ("[]", "IdPConfig"),
    ],
)
def test_idp_serve_and_token_report_bad_config_files(tmp_path: Path, content: str, fragment: str) -> None:
    config = tmp_path / "idp.json"
    config.write_text(content)
    assert_config_error(run("idp", "serve", "--config", str(config)), str(config), fragment)
    assert_config_error(run("idp", "token", "--config", str(config), "alice"), fragment)


def test_idp_serve_reports_a_missing_file_and_token_an_unknown_client(tmp_path: Path) -> None:
    assert_config_error(run("idp", "serve", "--config", str(tmp_path / "nope.json")), "No such file")
    out = tmp_path / "idp.json"
    assert (
        run("idp", "init", "--issuer", "http://127.0.0.1:9", "--out", str(out), "--client", "a").exit_code
        == 0
    )
    assert_config_error(run("idp", "token", "--config", str(out), "zed"), "no client 'zed'", "it has: a")


def test_idp_token_explains_an_unreachable_idp(tmp_path: Path) -> None:
    out = tmp_path / "idp.json"
    assert (
        run("idp", "init", "--issuer", "http://127.0.0.1:9", "--out", str(out), "--client", "a").exit_code
        == 0
    )
    result = run("idp", "token", "--config", str(out), "a")
    assert (
        result.exit_code == 1
        and "cannot reach the dev IdP" in result.output
        and "fhs idp serve" in result.output
    )


def test_operator_secret_tells_where_it_is_without_printing_it(tmp_path: Path) -> None:
    assert_config_error(run("operator-secret", "--data-dir", str(tmp_path)), "fhs serve --data-dir")
    OperatorSecret.open(tmp_path)
    secret = (tmp_path / "operator.secret").read_text().strip()
    result = run("operator-secret", "--data-dir", str(tmp_path), "--url", "http://127.0.0.1:8081")
    assert result.exit_code == 0 and "(mode 0600)" in result.output
    assert secret not in result.output
    assert "http://127.0.0.1:8081/operator/v1/status" in result.output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--fhs-id", "Not Valid"], "fhs_id"),
        (["--allow", "not a cidr/x"], "allow-list entry"),
        (["--store-url", "mysql://u:s3cr3tpw@db/x"], "unsupported store URL scheme 'mysql'"),
        (["--port", "70000"], "port"),
    ],
)
def test_serve_refuses_bad_settings_before_listening(tmp_path: Path, args: list[str], fragment: str) -> None:
    result = run("serve", "--data-dir", str(tmp_path / "data"), *args)
    assert_config_error(result, fragment)
    assert "s3cr3tpw" not in result.output, "a store password is never echoed"


def test_cli_help_lists_the_admin_commands() -> None:
    result = run("--help")
    assert result.exit_code == 0
    for command in ("serve", "idp", "operator-secret"):
        assert command in result.output
    idp_help = run("idp", "--help").output
    assert all(command in idp_help for command in ("init", "serve", "token"))
