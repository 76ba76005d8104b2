"""Every package the code imports is declared in pyproject.toml, so a fresh install has it.

The declared requirements are read from pyproject.toml itself, so the check holds whether or
not the project is pip-installed (on Python 3.10, without tomllib, from the installed metadata).
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


def _declared() -> tuple[list[str], list[str]]:
    """The runtime requirements and those of the extras."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        requires = importlib.metadata.requires("reslab") or []
        return [r for r in requires if "extra ==" not in r], requires
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    return project["dependencies"], extras


RUNTIME = _names(_declared()[0])
DEV = RUNTIME | _names(_declared()[1])


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
