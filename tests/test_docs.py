"""The user docs stay true to the code: settings, CLI commands, endpoints, quick start.

Like datasette's ``test_settings_are_documented`` and ``cog --check``: a setting,
command or endpoint added without its docs fails here, not in a user's hands.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

import cityos.api
from cityos.cli import main as cli_main
from cityos.config import SETTINGS_HELP

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PREFIX = "/ngsi-ld/v1"


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _commands(
    command: click.Command = cli_main, path: tuple[str, ...] = ()
) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(("cityos", *path)), command
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            if not sub.hidden:
                yield from _commands(sub, (*path, name))


def _endpoints() -> Iterator[str]:
    """``METHOD /prefix/path`` for every row of every ``ROUTES`` table in cityos.api."""
    for info in pkgutil.iter_modules(cityos.api.__path__):
        module = importlib.import_module(f"cityos.api.{info.name}")
        prefix = getattr(module, "PREFIX", PREFIX)  # City OS's own API: /cityos/v1
        for route in getattr(module, "ROUTES", []):
            path, methods = route[0], route[2]
            shown = prefix + re.sub(r"\{(\w+):\w+\}", r"{\1}", path)
            for method in methods:
                yield f"{method} {shown}"
    yield "GET /version"


@pytest.mark.parametrize("name", list(SETTINGS_HELP))
def test_every_setting_is_documented(name: str) -> None:
    page = _read(DOCS / "reference" / "settings.md")
    assert f"### `{name}`" in page
    assert f"`CITYOS_{name.upper()}`" in page
    assert SETTINGS_HELP[name] in page


def test_every_setting_has_a_one_line_help() -> None:
    for name, text in SETTINGS_HELP.items():
        assert text.strip() and "\n" not in text, name


def test_reference_pages_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_reference.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_quick_start_is_two_commands() -> None:
    readme = _read(ROOT / "README.md")
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```\w*\n(.*?)```", section, re.S)
    assert block is not None, "the Quick start section has no code block"
    commands = [line.split("#", 1)[0].strip() for line in block.group(1).splitlines()]
    assert [c for c in commands if c] == ["make serve", "make test"]


@pytest.mark.parametrize("name", [name for name, _ in _commands()])
def test_every_cli_command_is_documented(name: str) -> None:
    assert f"## `{name}`" in _read(DOCS / "reference" / "cli.md")


@pytest.mark.parametrize("name,command", list(_commands()))
def test_every_cli_command_has_help(name: str, command: click.Command) -> None:
    assert command.help and command.help.strip(), f"{name} has no help text"


@pytest.mark.parametrize("endpoint", sorted(set(_endpoints())))
def test_every_endpoint_is_in_the_api_reference(endpoint: str) -> None:
    assert f"### `{endpoint}`" in _read(DOCS / "reference" / "api.md")


def test_docs_links_resolve() -> None:
    """Relative links between the docs, the README and the changelog point at files."""
    pages = [ROOT / "README.md", ROOT / "CHANGELOG.md", *DOCS.rglob("*.md")]
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", _read(page)):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            file = target.split("#", 1)[0]
            assert (page.parent / file).exists(), f"{page.relative_to(ROOT)} links to {target}"
