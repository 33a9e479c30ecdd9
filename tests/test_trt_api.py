"""API conformance: every TensorRT and CUDA-runtime name this package uses exists in every
supported version (``export/data/trt_api.json``, written by ``export/tools/trt_api_table.py`` from
the binding wheels; this test reads the table and downloads nothing).

The walker finds the modules that use TensorRT or cuda-bindings by how they get the module
(``import tensorrt``, ``X = import_tensorrt()``, ``from cuda.bindings import runtime``, a function
that returns one of those, an attribute assigned one of those), then checks

- ``trt.X`` / ``cudart.X``: a module name; ``trt.X.Y``: a member of class or enum X;
- ``v.Y`` where ``v`` is a TensorRT object whose class the walker can tell (``v = trt.Builder(..)``,
  ``v = builder.create_builder_config()``: the return class of each method comes from its pybind11
  signature): a member of that class or of its bases.

Names it cannot type (a value passed in from elsewhere) are not checked: it proves presence of
what it sees, not absence of every misuse.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = ("runtime", "export", "reference", "benchmarks")
TABLE = ROOT / "export" / "data" / "trt_api.json"


@lru_cache(maxsize=1)
def table() -> dict:
    return json.loads(TABLE.read_text())


class API:
    """One version's names: the family's common names plus the ones only that version has."""

    def __init__(self, family: str, version: str):
        fam = table()[family]
        self.family, self.version = family, version
        self.module: set[str] = set()
        self.classes: dict[str, set[str]] = {}
        self.enums: dict[str, set[str]] = {}
        self.bases: dict[str, list[str]] = {}
        self.returns: dict[str, str] = {}
        for part in (fam["common"], fam["only"][version]):
            self.module |= set(part["module"].split())
            for sec, dst in (("classes", self.classes), ("enums", self.enums)):
                for k, v in part[sec].items():
                    dst.setdefault(k, set()).update(v.split())
            for k, v in part["bases"].items():
                self.bases.setdefault(k, []).extend(v.split())
            self.returns.update(part["returns"])

    def members(self, cls: str) -> set[str] | None:
        if cls in self.enums:
            return self.enums[cls] | {"name", "value"}
        if cls not in self.classes:
            return None
        out = set(self.classes[cls])
        for b in self.bases.get(cls, []):
            out |= self.members(b) or set()
        return out

    def returned(self, cls: str, method: str) -> str | None:
        if f"{cls}.{method}" in self.returns:
            return self.returns[f"{cls}.{method}"]
        return next((r for b in self.bases.get(cls, []) if (r := self.returned(b, method))), None)


def versions() -> list[tuple[str, str]]:
    return [(fam, v) for fam in ("tensorrt", "cudart") for v in table()[fam]["versions"]]


# ------------------------------------------------------------------ finding the modules' aliases

_TRT_MODULES = {"tensorrt", "tensorrt_bindings"}
_CUDART_MODULES = {"cuda.bindings.runtime", "cuda.cudart"}


def _aliases(tree: ast.Module) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(local name -> family, attribute name -> family, function name -> family it returns)."""
    names: dict[str, str] = {}
    attrs: dict[str, str] = {}
    funcs: dict[str, str] = {"import_tensorrt": "tensorrt"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in _TRT_MODULES:
                    names[a.asname or a.name] = "tensorrt"
                elif a.name in _CUDART_MODULES and a.asname:
                    names[a.asname] = "cudart"
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                if f"{node.module}.{a.name}" in _CUDART_MODULES:
                    names[a.asname or a.name] = "cudart"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for arg in node.args.args + node.args.kwonlyargs:
                if arg.arg == "trt":  # the builder passes the module in as `trt` by convention
                    names[arg.arg] = "tensorrt"

    def family(expr) -> str | None:
        if isinstance(expr, ast.Name):
            return names.get(expr.id)
        if isinstance(expr, ast.Attribute):
            return attrs.get(expr.attr)
        if isinstance(expr, ast.Call):
            f = expr.func
            fname = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            return funcs.get(fname)
        return None

    changed = True
    while changed:  # to a fixpoint: aliases of aliases, functions returning an alias
        changed = False
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and (fam := family(node.value)):
                for t in node.targets:
                    if isinstance(t, ast.Name) and names.get(t.id) != fam:
                        names[t.id] = fam
                        changed = True
                    elif isinstance(t, ast.Attribute) and attrs.get(t.attr) != fam:
                        attrs[t.attr] = fam
                        changed = True
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name not in funcs:
                for r in ast.walk(node):
                    if isinstance(r, ast.Return) and r.value is not None and (fam := family(r.value)):
                        funcs[node.name] = fam
                        changed = True
                        break
    return names, attrs, funcs


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    name: str
    family: str
    version: str

    def __str__(self):
        return f"{self.path}:{self.line}: {self.name} is not in {self.family} {self.version}"


def check_source(source: str, path: str, apis: list[API]) -> tuple[list[Problem], int]:
    """(problems, number of API names checked) for one module against each version's names."""
    tree = ast.parse(source, path)
    names, attrs, _ = _aliases(tree)
    if not names and not attrs:
        return [], 0

    def base_family(expr) -> str | None:
        if isinstance(expr, ast.Name):
            return names.get(expr.id)
        if isinstance(expr, ast.Attribute) and not isinstance(expr.value, ast.Attribute):
            return attrs.get(expr.attr) if isinstance(expr.value, ast.Name) else None
        return None

    # each node's innermost enclosing function: a variable's class is inferred per function
    scope_of: dict[int, ast.AST] = {}

    def mark(node, scope):
        for child in ast.iter_child_nodes(node):
            scope_of[id(child)] = scope
            mark(child, child if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) else scope)

    mark(tree, tree)
    problems, checked = [], 0
    for api in apis:
        var_types: dict[tuple[int, str], str] = {}  # (scope, name) -> class

        def type_of(expr) -> str | None:
            if isinstance(expr, ast.Name):
                return var_types.get((id(scope_of.get(id(expr))), expr.id))
            if isinstance(expr, ast.Call):
                f = expr.func
                if isinstance(f, ast.Attribute):
                    if base_family(f.value) == api.family and f.attr in api.classes:
                        return f.attr  # trt.Builder(logger)
                    owner = type_of(f.value)
                    if owner:
                        return api.returned(owner, f.attr)  # builder.create_builder_config()
            return None

        # flow-insensitive within a function: a name keeps the class of a TensorRT call assigned to it
        for _ in range(3):  # chains assigned out of order
            for node in ast.walk(tree):
                if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                    key = (id(scope_of.get(id(node.targets[0]))), node.targets[0].id)
                    if key not in var_types and (t := type_of(node.value)) is not None:
                        var_types[key] = t

        def bad(node, name):
            problems.append(Problem(path, node.lineno, name, api.family, api.version))

        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or node.attr.startswith("__"):
                continue
            if base_family(node.value) == api.family:  # trt.X
                checked += 1
                if node.attr not in api.module:
                    bad(node, f"{'trt' if api.family == 'tensorrt' else 'cudart'}.{node.attr}")
            elif isinstance(node.value, ast.Attribute) and base_family(node.value.value) == api.family:  # trt.X.Y
                members = api.members(node.value.attr)
                if members is not None:
                    checked += 1
                    if node.attr not in members:
                        bad(node, f"{node.value.attr}.{node.attr}")
            elif api.family == "tensorrt" and (cls := type_of(node.value)):  # builder.create_network
                members = api.members(cls)
                if members is not None:
                    checked += 1
                    if node.attr not in members:
                        bad(node, f"{cls}.{node.attr}")
    return problems, checked


def _all_apis() -> list[API]:
    return [API(fam, v) for fam, v in versions()]


def package_modules() -> list[Path]:
    return sorted(p for d in PACKAGE_DIRS for p in (ROOT / d).rglob("*.py") if ".venv" not in p.parts)


# ------------------------------------------------------------------ tests


def test_table_has_the_supported_versions_and_the_names_the_removals_are_about():
    t = table()
    trt_versions = t["tensorrt"]["versions"]
    assert {v.split(".")[0] for v in trt_versions} == {"10", "11"}
    assert {v.split(".")[0] for v in t["cudart"]["versions"]} == {"12", "13"}
    v10, v11 = (API("tensorrt", v) for v in sorted(trt_versions, key=lambda v: int(v.split(".")[0])))
    # what issue 12 is about, read back from the wheels: strong typing only in 11
    assert {"FP16", "BF16", "OBEY_PRECISION_CONSTRAINTS", "TF32"} <= v10.enums["BuilderFlag"]
    assert "TF32" in v11.enums["BuilderFlag"] and not {"FP16", "BF16", "OBEY_PRECISION_CONSTRAINTS"} & v11.enums[
        "BuilderFlag"]
    assert "STRONGLY_TYPED" in v10.enums["NetworkDefinitionCreationFlag"] & v11.enums["NetworkDefinitionCreationFlag"]
    assert {"precision", "set_output_type"} <= v10.members("ILayer") and not {"precision", "set_output_type"} & \
        v11.members("ILayer")
    assert v10.returned("Builder", "create_builder_config") == "IBuilderConfig"
    assert v11.returned("IConvolutionLayer", "get_output") == "ITensor"  # through the base class ILayer


def test_the_trt_extra_pins_the_versions_in_the_table():
    import tomllib

    from packaging.requirements import Requirement

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["trt"]
    reqs = {Requirement(r).name: Requirement(r) for r in extra}
    for v in table()["tensorrt"]["versions"]:
        assert reqs["tensorrt"].specifier.contains(v), (v, str(reqs["tensorrt"]))
    # cuda-python X.Y.Z installs cuda-bindings ~= X.Y.Z: each tabled bindings version is one it can pull
    for v in table()["cudart"]["versions"]:
        assert reqs["cuda-python"].specifier.contains(v), (v, str(reqs["cuda-python"]))


def test_every_tensorrt_and_cuda_name_we_use_exists_in_every_supported_version():
    apis = _all_apis()
    problems, checked, users = [], 0, []
    for p in package_modules():
        probs, n = check_source(p.read_text(), str(p.relative_to(ROOT)), apis)
        problems += probs
        checked += n
        if n:
            users.append(str(p.relative_to(ROOT)))
    # the walker must find the TensorRT code, or the test proves nothing
    assert "export/trt_build.py" in users and "runtime/gpu.py" in users, users
    assert checked > 50, checked
    assert not problems, "\n".join(map(str, problems))


SNIPPET_REMOVED = """
from indextts_trt.export.trt_build import import_tensorrt

def build(path):
    trt = import_tensorrt()
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    layer = network.get_layer(0)
    layer.precision = trt.float32
    layer.set_output_type(0, trt.float32)
    return builder.platform_has_fast_fp16
"""

SNIPPET_FINE = """
import tensorrt as trt
from cuda.bindings import runtime as cudart

def build():
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    config = builder.create_builder_config()
    config.clear_flag(trt.BuilderFlag.TF32)
    ok = config.set_timing_cache(config.create_timing_cache(b""), True)
    err, n = cudart.cudaGetDeviceCount()
    return ok and err == cudart.cudaError_t.cudaSuccess and network.get_layer(0).get_output(0).dtype
"""


def test_the_checker_fails_on_the_api_tensorrt_11_removed():
    apis = _all_apis()
    problems, checked = check_source(SNIPPET_REMOVED, "snippet.py", apis)
    found = {(p.line, p.name, p.version) for p in problems}
    v10, v11 = sorted(table()["tensorrt"]["versions"], key=lambda v: int(v.split(".")[0]))
    assert (9, "BuilderFlag.FP16", v11) in found
    assert (7, "NetworkDefinitionCreationFlag.EXPLICIT_BATCH", v11) in found
    assert (11, "ILayer.precision", v11) in found and (12, "ILayer.set_output_type", v11) in found
    assert (13, "Builder.platform_has_fast_fp16", v11) in found
    assert not any(p.version == v10 for p in problems), problems  # all of it exists in 10.x
    assert "snippet.py:9: BuilderFlag.FP16 is not in tensorrt " + v11 in {str(p) for p in problems}
    problems, checked = check_source(SNIPPET_FINE, "fine.py", apis)
    assert not problems and checked >= 10, (problems, checked)


def test_the_checker_fails_on_a_cuda_name_one_version_lacks():
    only12 = sorted(table()["cudart"]["only"][table()["cudart"]["versions"][0]]["module"].split())
    assert only12, "cuda-bindings 12 and 13 should differ"
    name = next(n for n in only12 if n.startswith("cuda"))
    src = f"from cuda.bindings import runtime as rt\n\ndef f():\n    return rt.{name}\n"
    problems, _ = check_source(src, "c.py", _all_apis())
    assert [(p.line, p.family, p.version) for p in problems] == [(4, "cudart", table()["cudart"]["versions"][1])]


@pytest.mark.parametrize("src", ["import numpy as np\nx = np.zeros(3).sum\n", "trt = 3\nprint(trt.real)\n"])
def test_modules_without_tensorrt_are_not_checked(src):
    assert check_source(src, "x.py", _all_apis()) == ([], 0)
