"""One set of defaults (issue 25 item 4): docs/operations.md's table of `predserve serve`'s
settings, `predserve serve --help` and the server's configuration all say what
predserve.settings says."""

from __future__ import annotations

import re

from click.testing import CliRunner

from predserve import settings
from predserve.cli import main
from predserve.serving.config import ServeConfig, ServerOptions
from tests.support.processes import ROOT


def documented_settings() -> dict[str, tuple[tuple[str, ...], str]]:
    """docs/operations.md's options table: flag -> (its variables, its default as written)."""
    text = (ROOT / "docs/operations.md").read_text()
    table = text.split("| option | variable | default | |", 1)[1].split("\n\n", 1)[0]
    rows: dict[str, tuple[tuple[str, ...], str]] = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        flags = re.findall(r"`(--[a-z-]+)", cells[0])
        variables = re.findall(r"`((?:PREDSERVE_)?[A-Z_]+)`", cells[1])
        defaults = [d.strip().strip("`") for d in cells[2].split(",")] if len(flags) > 1 else [cells[2].strip("`")]
        for flag, default in zip(flags, defaults, strict=True):
            mine = tuple(v for v in variables if v.startswith(f"PREDSERVE_{flag[2:].upper().replace('-', '_')}")
                         or (flag == "--port" and v == "PORT") or (flag == "--iam" and v == settings.IAM_ENV))
            rows[flag] = (mine, default)
    return rows


def as_written(setting: settings.Setting) -> str:
    """How the table writes a default."""
    if setting.default is None:
        return "(required)" if setting.option == "--store" else f"./{settings.IAM_FILE}"
    if isinstance(setting.default, bool):
        return "on" if setting.default else "off"
    return str(setting.default)


def test_the_docs_table_of_settings_is_the_code() -> None:
    documented = documented_settings()
    assert set(documented) == {s.option for s in settings.SERVE.values()}, "a setting is missing from docs/operations.md or the code"
    for setting in settings.SERVE.values():
        variables, default = documented[setting.option]
        assert variables == setting.envvars, setting.option
        assert default == as_written(setting), setting.option


def test_serve_help_shows_each_settings_variable_and_default() -> None:
    text = " ".join(CliRunner().invoke(main, ["serve", "--help"], terminal_width=400).output.split())
    for name, setting in settings.SERVE.items():
        assert f"{setting.option} " in text, name
        assert f"env var: {', '.join(setting.envvars)}" in text, name
        if setting.default is not None and not isinstance(setting.default, bool):
            assert f"default: {setting.default}" in text, name


def test_the_servers_configuration_defaults_are_the_settings() -> None:
    config, options = ServeConfig("store.lmdb"), ServerOptions()
    for name, setting in settings.SERVE.items():
        if name in ("store", "iam_path"):
            continue
        if name == "no_auth":
            assert config.auth is not setting.default
            continue
        holder = config if hasattr(config, name) and name != "workers" else options
        assert getattr(holder, name) == setting.default, name
