"""The package layout: few modules at the root, imports that only run downwards, no citation of a missing file.

Layers (docs/layout.md), lowest first: the shared base (errors, type and hyperparameter tables, vocabulary)
-> formats -> quants -> tokenizer/runtime -> generation/constrain -> model -> tools/serve -> cli. A module
may import from its own layer or any lower one, never from a higher one. Imports are read with :mod:`ast`,
including those inside functions, so a lazy import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import airoboros_ggml

PACKAGE = Path(airoboros_ggml.__file__).parent
REPO = Path(__file__).resolve().parents[1]
NAME = "airoboros_ggml"
MAX_ROOT_MODULES = 8

LAYERS: dict[str, int] = {
    # the shared base: exceptions, per-type size tables, hyperparameters, vocabulary, the default model's path
    "errors": 0,
    "ggml_types": 0,
    "hparams": 0,
    "vocab": 0,
    "default_model": 0,
    "progress": 0,
    "formats": 1,
    "quants": 2,
    "tokenizer": 3,
    "runtime": 3,
    "generation": 4,
    "constrain": 4,
    "model": 5,
    "__init__": 6,  # the public facade re-exports the model layer, everything below it, and the tools' functions
    "tools": 6,
    "serve": 6,
    "cli": 7,
    "__main__": 8,
}


def _modules(package: Path = PACKAGE) -> list[Path]:
    return sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)


def _is_module(package: Path, parts: tuple[str, ...]) -> bool:
    """Whether ``parts`` names a module or package below ``package`` (``()``: the package itself)."""
    target = package.joinpath(*parts)
    return (target / "__init__.py").is_file() or (bool(parts) and target.with_suffix(".py").is_file())


def _imports(path: Path, package: Path = PACKAGE) -> set[tuple[str, ...]]:
    """Package-internal modules ``path`` imports, as name parts below the package (``()``: the package itself).

    Absolute and relative imports anywhere in the file count; ``from . import x`` names the submodule ``x``
    when there is one.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = tuple(path.relative_to(package).parts[:-1])  # the package a relative import starts from
    found: set[tuple[str, ...]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {tuple(a.name.split(".")[1:]) for a in node.names if a.name.split(".")[0] == NAME}
        elif isinstance(node, ast.ImportFrom):
            module = tuple(node.module.split(".")) if node.module else ()
            if node.level:
                base = here[: len(here) - (node.level - 1)]
            elif module[:1] == (NAME,):
                base, module = (), module[1:]
            else:
                continue
            parent = (*base, *module)
            subs = {(*parent, a.name) for a in node.names if _is_module(package, (*parent, a.name))}
            found |= subs or {parent}
    return found


def _top_level(parts: tuple[str, ...]) -> str:
    return parts[0] if parts else "__init__"


def _own_top_level(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_every_part_of_the_package_has_a_layer():
    missing = {_own_top_level(p) for p in _modules()} - set(LAYERS)
    assert not missing, f"give these a layer in LAYERS (and docs/layout.md): {sorted(missing)}"


def test_at_most_eight_modules_at_the_package_root():
    root = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert len(root) <= MAX_ROOT_MODULES, f"{len(root)} modules at the package root: {root}"


def test_every_internal_import_names_a_module():
    missing = [
        f"{path.relative_to(PACKAGE)} imports {'.'.join((NAME, *parts))}"
        for path in _modules()
        for parts in _imports(path)
        if not _is_module(PACKAGE, parts)
    ]
    assert not missing, "\n".join(missing)


def test_no_import_runs_upward():
    upward = []
    for path in _modules():
        here = _own_top_level(path)
        for target in {_top_level(parts) for parts in _imports(path)}:
            if LAYERS[target] > LAYERS[here]:
                upward.append(f"{path.relative_to(PACKAGE)} ({here}, layer {LAYERS[here]}) imports {target} "
                              f"(layer {LAYERS[target]})")
    assert not upward, "imports running upward:\n" + "\n".join(upward)


def test_the_import_reader_sees_every_kind_of_import(tmp_path):
    """A check of the checker: relative, absolute, package-level and lazy imports name the right modules."""
    fake = tmp_path / NAME
    for part in ("runtime", "formats", "quants"):
        (fake / part).mkdir(parents=True)
        (fake / part / "__init__.py").write_text("")
    for module in ("errors.py", "model.py", "runtime/kv_cache.py", "quants/simd.py"):
        (fake / module).write_text("")
    (fake / "runtime" / "forward.py").write_text(
        "import numpy\n"
        "from . import kv_cache\n"
        "from ..formats import ModelFile\n"
        "from .. import errors\n"
        "import airoboros_ggml.quants.simd\n"
        "from airoboros_ggml import load\n"
        "def f():\n"
        "    from ..model import load\n"
    )
    found = _imports(fake / "runtime" / "forward.py", package=fake)
    assert found == {("runtime", "kv_cache"), ("formats",), ("errors",), ("quants", "simd"), (), ("model",)}
    assert {_top_level(parts) for parts in found} == {"runtime", "formats", "errors", "quants", "__init__", "model"}


_SKIP_DIRS = {"__pycache__", "build", "dist", "node_modules"}
_CITATION = re.compile(r"\b(?:docs/[\w./-]+\.md|[A-Z][A-Z_]+\.md)\b")


def _text_files() -> list[Path]:
    """The repository's own text files (not virtual environments, build outputs or caches)."""
    suffixes = {".py", ".md", ".toml", ".txt", ".cfg", ".ini"}
    files = []
    for root, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if not (d.startswith(".") or d.endswith(".egg-info") or d in _SKIP_DIRS)]
        files += [Path(root) / n for n in names if Path(n).suffix in suffixes]
    return files


def test_no_file_cites_a_missing_document():
    """Citations of Markdown files (paths under docs/, upper-case names) name files the repository has."""
    missing = []
    for path in _text_files():
        for match in _CITATION.findall(path.read_text(encoding="utf-8", errors="replace")):
            if not ((REPO / match).is_file() or (REPO / "docs" / match).is_file()):
                missing.append(f"{path.relative_to(REPO)}: {match}")
    assert not missing, "citations of files the repository lacks:\n" + "\n".join(missing)
