"""The package's folders are the pipeline's stages, and each stage imports only what is below it.

The rules are the ones each stage's __init__.py docstring states; this test keeps the layout true."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gspx_cli"
BASE = {"gspx_cli", "gspx_cli.errors", "gspx_cli.jsonio"}  # "gspx_cli": only __version__
STAGES = {
    "read": set(),
    "mapping": set(),
    "state": {"read"},
    "delivery": {"mapping", "state"},
    "report": {"mapping", "state"},
}


def _imports(path):
    """Every gspx_cli module a file imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gspx_cli"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names if (PACKAGE / a.name).is_dir()
                         and node.module == "gspx_cli")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("gspx_cli"))
        if isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path.name}: relative import; the stages use absolute ones"
    return found


def _stage(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_imports_only_the_base_and_the_stages_below_it(stage):
    allowed = STAGES[stage] | {stage}
    for path in sorted((PACKAGE / stage).glob("*.py")):
        for module in _imports(path):
            if module in BASE:
                continue
            assert _stage(module) in allowed, f"{stage}/{path.name} imports {module}"


def test_the_base_modules_import_nothing_of_the_stages():
    for name in ("errors.py", "jsonio.py"):
        assert all(m in BASE for m in _imports(PACKAGE / name)), name


def test_every_stage_says_what_it_does_and_what_it_may_import():
    for stage, below in STAGES.items():
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text(encoding="utf-8")))
        assert doc and "May import" in doc, stage
        assert all(b in doc.split("May import")[1] for b in below), stage


def test_only_the_top_of_the_package_holds_loose_modules():
    loose = {p.stem for p in PACKAGE.glob("*.py")}
    assert loose == {"__init__", "__main__", "cli", "config", "config_values", "coordinator", "dispatch", "errors", "jsonio"}
