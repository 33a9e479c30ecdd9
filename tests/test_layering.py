"""Import rules, checked on the AST of every module (function-level imports included):
- runtime/ imports nothing from export/, reference/ or benchmarks/, and never torch; the one
  exception is tts-run's lazy hand-over of ``--backend torch`` to the reference;
- reference/ imports nothing from the runtime's pipeline or backends (only its front ends and specs);
- nothing but the benchmarks' entry points imports benchmarks/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"runtime": "indextts_trt.runtime", "export": "indextts_trt.export", "reference": "indextts_trt.reference",
            "benchmarks": "indextts_trt.benchmarks"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    name = ".".join([PACKAGES[parts[0]], *parts[1:]])
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level?) for every import statement in the file."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    return imports_of(path.read_text(), package, str(path))


def imports_of(source: str, package: str, filename: str = "<src>") -> list[tuple[str, int, bool]]:
    tree = ast.parse(source, filename)
    found = []

    def visit(node, top: bool):
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                found.extend((a.name, child.lineno, top) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    mod = ".".join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ""
                found.append((mod, child.lineno, top))
                found.extend((f"{mod}.{a.name}", child.lineno, top) for a in child.names)
            visit(child, inner)

    visit(tree, True)
    return found


def files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def _under(mod: str, prefix: str) -> bool:
    return mod == prefix or mod.startswith(prefix + ".")


def test_the_walk_sees_relative_and_function_level_imports():
    """The checker itself: relative imports resolved against the package, imports inside functions
    and classes found and marked as not module-level."""
    src = ("from ..audio import x\nfrom . import stages\nimport numpy as np\n"
           "class A:\n    def f(self):\n        import torch\n        from indextts_trt.export.build import b\n")
    got = {(m, top) for m, _, top in imports_of(src, "indextts_trt.runtime.indextts2")}
    assert {("indextts_trt.runtime.audio", True), ("indextts_trt.runtime.indextts2.stages", True), ("numpy", True),
            ("torch", False), ("indextts_trt.export.build", False)} <= got


@pytest.mark.parametrize("path", files("runtime"), ids=lambda p: str(p.relative_to(ROOT)))
def test_runtime_is_torch_free_and_independent(path):
    bad = []
    for mod, line, top in imports(path):
        if _under(mod, "torch") or _under(mod, "indextts_trt.export") or _under(mod, "indextts_trt.benchmarks"):
            bad.append((mod, line))
        elif _under(mod, "indextts_trt.reference"):
            # tts-run hands --backend torch to the reference, lazily (inside a function) and only there
            if not (path == ROOT / "runtime" / "cli.py" and not top):
                bad.append((mod, line))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


FORBIDDEN_FOR_REFERENCE = ("indextts_trt.runtime.pipeline", "indextts_trt.runtime.indextts2.pipeline",
                           "indextts_trt.runtime.runners", "indextts_trt.runtime.ort_backend",
                           "indextts_trt.runtime.trt_backend", "indextts_trt.export", "indextts_trt.benchmarks")


@pytest.mark.parametrize("path", files("reference"), ids=lambda p: str(p.relative_to(ROOT)))
def test_reference_uses_no_runtime_pipeline(path):
    bad = [(m, ln) for m, ln, _ in imports(path) if any(_under(m, f) for f in FORBIDDEN_FOR_REFERENCE)]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_only_entry_points_import_the_benchmarks():
    allowed = {ROOT / "export" / "cli.py"}
    bad = [(str(p.relative_to(ROOT)), m) for folder in ("runtime", "export", "reference") for p in files(folder)
           for m, _, _ in imports(p) if _under(m, "indextts_trt.benchmarks") and p not in allowed]
    assert not bad, bad
