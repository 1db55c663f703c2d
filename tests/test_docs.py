"""The README, docs/ and the help stay honest: every option, exit code, command, config key and --report key
is documented where a reader looks for it, every relative link resolves, and the module names are current.

The README is for users (the two fresh-machine commands, the exit statuses); the reference lives in
docs/send.md (options, config keys, --report keys, commands), docs/delivery.md, docs/archives.md,
docs/performance.md and docs/design.md."""

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
DOCS = ROOT / "docs"
SEND = (DOCS / "send.md").read_text(encoding="utf-8")
DESIGN = (DOCS / "design.md").read_text(encoding="utf-8")
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
PACKAGE = ROOT / "gspx_cli"
INSTALL_AND_RUN = ("python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && "
                   "gspx send --dry-run -c config.example.yaml examples/events.ndjson")
TEST_COMMAND = "python -m pytest"
FIRST_SCREEN_LINES = 24


def _section(title, text=README, page="README.md"):
    """The text under a `## title` heading, up to the next `## `."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, f"{page} has no '## {title}' section"
    return match.group(1)


def _send_section(title):
    return _section(title, SEND, "docs/send.md")


def _code_blocks(text):
    return re.findall(r"```[a-z]*\n(.*?)```", text, re.S)


def _without_code(text):
    """Markdown text with fenced code blocks and inline code removed (links inside them are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _slug(heading):
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(text):
    """Every heading anchor of a Markdown page, duplicates numbered as GitHub numbers them."""
    seen, anchors = {}, set()
    for heading in re.findall(r"^#{1,6} (.+)$", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M), re.M):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


# -- the README: the two commands, the exit statuses, links to the reference ----------------------------

def test_readme_starts_with_the_two_fresh_machine_commands():
    blocks = _code_blocks(README)
    assert blocks[0].strip() == INSTALL_AND_RUN
    assert blocks[1].strip() == TEST_COMMAND
    assert README.index(INSTALL_AND_RUN) < README.index("\n## ")  # before the first section
    first_screen = "\n".join(README.splitlines()[:FIRST_SCREEN_LINES])
    assert INSTALL_AND_RUN in first_screen and f"\n{TEST_COMMAND}\n" in first_screen


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install" in ci and "-e '.[test]'" in ci
    assert ci.rstrip().splitlines()[-1] == TEST_COMMAND


@pytest.mark.parametrize("code", list(ExitCode))
def test_readme_lists_every_exit_code(code):
    assert re.search(rf"^\| {int(code)} \| \S", _section("Exit status"), re.M), code


def test_readme_has_the_user_sections_and_stays_short():
    for title in ("What it is, and why", "Install", "Quickstart", "Recipes", "Exit status", "Documentation"):
        _section(title)
    assert "### Rehearsal against the local sandbox" in _section("Quickstart")
    assert len(README.splitlines()) <= 300  # a README a user reads in five minutes; the reference is in docs/


def test_readme_links_every_page_of_the_reference():
    links = _section("Documentation")
    for page in sorted(DOCS.glob("*.md")):
        assert f"(docs/{page.name})" in links, page.name


def test_readme_why_describes_identify_as_an_upsert():
    # an identify is PUT, then POST only when PX says "not found" (mapping/plan.py), no longer a GET first
    why = _section("What it is, and why")
    assert "`PUT /users/{id}`" in why and "`POST /users`" in why
    assert "is a GET, then" not in why


# -- docs/send.md: options, commands, --report keys, config keys ----------------------------------------

@pytest.mark.parametrize("opt", sorted({o for p in send.params if isinstance(p, click.Option)
                                        for o in p.opts + p.secondary_opts}))
def test_send_reference_lists_every_send_option(opt):
    # inside a `code` cell of the options table, as a whole word (`-c, --config PATH`, `--progress / --no-progress`)
    cells = re.findall(r"^\| `([^`]*)` \|", _send_section("`gspx send`"), re.M)
    assert any(re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", cell) for cell in cells), opt


def test_every_send_option_has_help():
    for param in send.params:
        if isinstance(param, click.Option):
            assert param.help, param.name


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_is_documented_and_has_help(name):
    command = cli.commands[name]
    assert command.help
    assert f"`gspx {name}" in _send_section("Commands")
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.name}"


@pytest.mark.parametrize("key", sorted(REPORT_KEYS))
def test_send_reference_documents_every_report_key(key):
    assert f"| `{key}` |" in _send_section("`--report` JSON")


@pytest.mark.parametrize("key", [k for k in TOP_LEVEL_KEYS if k != "delivery"] + [f"delivery.{k}" for k in DELIVERY_KEYS])
def test_send_reference_config_table_has_every_key(key):
    assert f"| `{key}` |" in _send_section("Config file"), key


def test_send_reference_names_the_environment_variables_and_map_forms():
    config = _send_section("Config file")
    assert "GSPX_API_KEY" in config and "GSPX_CONFIG" in config
    assert "{from: hobbyCustomField, to: hobby}" in config


def test_send_reference_shows_shell_completion():
    assert 'eval "$(_GSPX_COMPLETE=bash_source gspx)"' in _send_section("Shell completion")


# -- docs/: each page has its sections ------------------------------------------------------------------

@pytest.mark.parametrize("page, titles", [
    ("send.md", ("Commands", "`gspx send`", "Dry-run output", "`--report` JSON", "Config file",
                 "Event mapping, in short", "`gspx sandbox`", "Shell completion")),
    ("delivery.md", ("Requests per event", "Delivery guarantees", "Outages and Retry-After", "Stops",
                     "Failed output", "The checkpoint")),
    ("archives.md", ("Files and standard input", "Directories", "Archive shapes", "Files that hold no events",
                     "Buckets", "Identities")),
    ("performance.md", ("gspx send: the six figures", "Archives and buckets", "Other benchmarks")),
    ("design.md", ("The pipeline", "The layout", "Import rules", "Where to change what", "Testing",
                   "Dependencies")),
])
def test_each_reference_page_has_its_sections(page, titles):
    text = (DOCS / page).read_text(encoding="utf-8")
    for title in titles:
        _section(title, text, f"docs/{page}")


def test_performance_page_says_how_to_measure():
    assert "python benchmarks/bench.py" in _section("gspx send: the six figures",
                                                    (DOCS / "performance.md").read_text(encoding="utf-8"),
                                                    "docs/performance.md")


# -- links and names stay true --------------------------------------------------------------------------

@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_a_file_and_anchor_that_exist(page):
    text = page.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", _without_code(text))
    assert links or page.name == "performance.md", f"{page.name} links to nothing"
    for target in links:
        if re.match(r"[a-z]+:", target):  # https:, mailto: are not checked (no network in tests)
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: {target}: no such file"
        if anchor:
            assert dest.suffix == ".md", f"{page.name}: {target}: an anchor into a file that is not Markdown"
            assert anchor in _anchors(dest.read_text(encoding="utf-8")), f"{page.name}: {target}: no such heading"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_file_named_in_the_docs_exists(page):
    # `mapping.py` became mapping/rules.py, `report.py` report/reporter.py: an old name must not linger
    modules = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")}
    basenames = {m.rsplit("/", 1)[-1] for m in modules}
    for name in re.findall(r"`((?:[\w.]+/)*[\w]+\.py)\b", page.read_text(encoding="utf-8")):
        if name.startswith(("tests/", "benchmarks/")):
            assert (ROOT / name).exists(), f"{page.name}: {name}"
        elif "/" in name:
            assert name.removeprefix("gspx_cli/") in modules, f"{page.name}: {name}"
        else:
            assert name in basenames, f"{page.name}: {name}"


def test_design_layout_names_every_module():
    layout = _section("The layout", DESIGN, "docs/design.md")
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py"):
            continue
        assert re.search(rf"^ +{re.escape(path.name)} ", layout, re.M), path.relative_to(ROOT)


def test_where_to_change_what_names_code_that_exists():
    # each `module.py`: `name`, `name` in the table's middle column is found in that module
    table = _section("Where to change what", DESIGN, "docs/design.md")
    rows = [line.split(" | ")[1] for line in table.splitlines() if line.startswith("| ") and " | " in line]
    assert len(rows) > 10
    for cell in rows:
        for module, names in re.findall(r"`([\w/]+\.py)`((?:[^`]|`(?![\w/]+\.py`)[^`]*`)*)", cell):
            source = (ROOT / module if module.startswith("tests/") else PACKAGE / module).read_text(encoding="utf-8")
            for name in re.findall(r"`([\w.]+)`", names):
                assert name.rsplit(".", 1)[-1] in source, f"{module}: {name}"


# -- the help -------------------------------------------------------------------------------------------

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
