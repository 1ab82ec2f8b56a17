"""The README's `scission` examples marked `<!-- scission-example -->`, run as written: same output.

Each ``$ `` line of such a block (with ``\\`` continuations) runs in bash, in a scratch directory whose
``../shared`` is the shared dataset folder, as in the repository; the lines up to the next ``$ `` are its
expected output. Only deterministic commands are marked (``plan``, ``predict``, ``import-scission``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHARED = ROOT.parent / "shared"


def readme_examples(text: str) -> list[tuple[str, str]]:
    """(command, expected output) pairs of every marked block, in order."""
    pairs: list[tuple[str, str]] = []
    for block in re.findall(r"<!-- scission-example -->\n```text\n(.*?)```", text, re.S):
        command: list[str] = []
        output: list[str] = []
        continued = False
        for line in block.splitlines():
            if continued:
                command.append(line)
            elif line.startswith("$ "):
                if command:
                    pairs.append(("\n".join(command), "".join(f"{o}\n" for o in output)))
                command, output = [line[2:]], []
            else:
                output.append(line)
            continued = line.endswith("\\")
        if command:
            pairs.append(("\n".join(command), "".join(f"{o}\n" for o in output)))
    return pairs


def test_readme_has_scission_examples_for_the_deterministic_commands() -> None:
    commands = " ".join(command for command, _ in readme_examples(README.read_text(encoding="utf-8")))
    for name in ("scission import-scission", "scission plan", "scission predict"):
        assert name in commands


def test_readme_scission_examples_print_what_the_readme_shows(tmp_path: Path) -> None:
    assert (SHARED / "datasets" / "scission").is_dir(), f"shared datasets missing at {SHARED}"
    (tmp_path / "shared").symlink_to(SHARED)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    examples = readme_examples(README.read_text(encoding="utf-8"))
    for command, expected in examples:
        run = subprocess.run(
            ["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode in (0, 1), f"{command}\n{run.stderr}"
        assert run.stdout == expected, f"README example changed its output: {command}"


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("$ a \\\n    b\nout\n$ c\n", [("a \\\n    b", "out\n"), ("c", "")]),
        ("$ only\n", [("only", "")]),
    ],
)
def test_examples_are_split_into_commands_and_outputs(block: str, expected: list[tuple[str, str]]) -> None:
    assert readme_examples(f"<!-- scission-example -->\n```text\n{block}```\n") == expected
