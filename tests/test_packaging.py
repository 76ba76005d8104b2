"""Every package the code imports is declared in pyproject.toml, so a fresh install has it.

The declared requirements are read from the installed project's metadata (what `pip install
-e .[dev]` made of pyproject.toml).
"""

import ast
import importlib.metadata
import re
import sys

import pytest

from .conftest import ROOT


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_canonical(re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0]) for r in requirements}


REQUIRES = importlib.metadata.requires("reslab") or []
RUNTIME = _names([r for r in REQUIRES if "extra ==" not in r])
DEV = _names(REQUIRES)


def _imports(path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"reslab", "tests"}


@pytest.mark.parametrize(
    "files, declared",
    [
        (
            [*(ROOT / "src").rglob("*.py"), *(ROOT / "scripts").glob("*.py"), ROOT / "train.py"],
            RUNTIME,
        ),
        (list((ROOT / "tests").glob("*.py")), DEV),
    ],
    ids=["package and scripts", "tests"],
)
def test_every_import_is_a_declared_dependency(files, declared):
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for path in files:
        for module in _imports(path):
            dists = {_canonical(d) for d in providers.get(module, [module])}
            if not dists & declared:
                missing[module] = path.relative_to(ROOT)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"
