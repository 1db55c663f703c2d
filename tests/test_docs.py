"""The README and the help stay honest: every option, exit code, command and --report key is documented."""

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gspx_cli.cli import cli, send
from gspx_cli.config import DELIVERY_KEYS, TOP_LEVEL_KEYS
from gspx_cli.errors import ExitCode
from test_report import REPORT_KEYS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
INSTALL_AND_RUN = ("python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && "
                   "gspx send --dry-run -c config.example.yaml examples/events.ndjson")
TEST_COMMAND = "python -m pytest"


def _section(title):
    """The README text under a `## title` heading, up to the next `## `."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.S | re.M)
    assert match, f"README has no '## {title}' section"
    return match.group(1)


def _code_blocks(text):
    return re.findall(r"```[a-z]*\n(.*?)```", text, re.S)


def test_readme_starts_with_the_two_fresh_machine_commands():
    blocks = _code_blocks(README)
    assert blocks[0].strip() == INSTALL_AND_RUN
    assert blocks[1].strip() == TEST_COMMAND
    assert README.index(INSTALL_AND_RUN) < README.index("\n## ")  # before the first section


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install" in ci and "-e '.[test]'" in ci
    assert ci.rstrip().splitlines()[-1] == TEST_COMMAND


@pytest.mark.parametrize("opt", sorted({o for p in send.params if isinstance(p, click.Option)
                                        for o in p.opts + p.secondary_opts}))
def test_readme_lists_every_send_option(opt):
    # inside a `code` cell of the options table, as a whole word (`-c, --config PATH`, `--progress / --no-progress`)
    cells = re.findall(r"^\| `([^`]*)` \|", _section("`gspx send`"), re.M)
    assert any(re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", cell) for cell in cells), opt


def test_every_send_option_has_help():
    for param in send.params:
        if isinstance(param, click.Option):
            assert param.help, param.name


@pytest.mark.parametrize("code", list(ExitCode))
def test_readme_lists_every_exit_code(code):
    assert re.search(rf"^\| {int(code)} \| \S", _section("Exit status"), re.M), code


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_is_documented_and_has_help(name):
    command = cli.commands[name]
    assert command.help
    assert f"`gspx {name}" in _section("Commands")
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.name}"


@pytest.mark.parametrize("key", sorted(REPORT_KEYS))
def test_readme_documents_every_report_key(key):
    assert f"| `{key}` |" in _section("`gspx send`")


@pytest.mark.parametrize("key", [k for k in TOP_LEVEL_KEYS if k != "delivery"] + [f"delivery.{k}" for k in DELIVERY_KEYS])
def test_readme_config_reference_has_every_key(key):
    assert f"| `{key}` |" in _section("Config file"), key


def test_readme_names_the_environment_variables_and_map_forms():
    config = _section("Config file")
    assert "GSPX_API_KEY" in config and "GSPX_CONFIG" in config
    assert "{from: hobbyCustomField, to: hobby}" in config


def test_readme_shows_shell_completion():
    assert 'eval "$(_GSPX_COMPLETE=bash_source gspx)"' in _section("Shell completion")


def test_readme_has_the_required_sections():
    for title in ("What it is, and why", "Quickstart", "Commands", "`gspx send`", "Config file",
                  "Event mapping, in short", "Delivery guarantees", "Exit status", "Recipes",
                  "Shell completion", "Performance", "Hardening / testing", "Dependencies"):
        _section(title)
    assert "python benchmarks/bench.py" in _section("Performance")


def test_send_help_ends_with_three_examples():
    help_text = CliRunner().invoke(cli, ["send", "--help"]).stdout
    examples = help_text.split("Examples:", 1)[1]
    commands = [line.strip() for line in examples.splitlines() if "gspx send" in line]
    assert len(commands) == 3
    assert commands[0].startswith("jq ") and "| gspx send" in commands[0]  # a pipeline from jq
    assert all(s in commands[1] for s in (".gz", "--checkpoint", "--failed-output"))  # a gzip backfill
    assert "--dry-run" in commands[2] and commands[2].split("|")[1].strip().startswith("jq")  # dry run into jq
    assert help_text.rstrip().endswith(commands[2])


def test_top_level_help_has_one_line_per_command():
    help_text = CliRunner().invoke(cli, ["--help"]).stdout
    for name in cli.commands:
        assert re.search(rf"^  {name} +\S", help_text, re.M), name
