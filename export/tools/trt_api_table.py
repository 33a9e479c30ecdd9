"""Write ``export/data/trt_api.json``: the Python API names of each supported TensorRT and
cuda-bindings version, read from their wheels (run by hand; the tests only read the JSON).

    python export/tools/trt_api_table.py            # the versions below
    python export/tools/trt_api_table.py --tensorrt 10.16.1.11 11.4.0.106 --cuda-bindings 12.9.10 13.4.4

How: ``pip download --no-deps`` each binding wheel into a temporary folder and unzip it. The
TensorRT bindings (``tensorrt_bindings/tensorrt.so``) link to libnvinfer, libnvinfer_plugin and
libnvonnxparser, which ship only in NVIDIA's library wheels (not installable here); the module's
import needs only a handful of C entry points from them, so the script compiles empty stand-ins
for those libraries (``cc``) and imports the real bindings against them in a child process, with
lazy symbol binding. Nothing is called: the child only lists names (``dir``, enum
``__members__``) and the return class of each method from its pybind11 signature. cuda-bindings
imports without a driver (with ``cuda-pathfinder``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

TENSORRT = ("10.16.1.11", "11.4.0.106")  # the latest 10.x and 11.x on the registry (2026-12)
CUDA_BINDINGS = ("12.9.10", "13.4.4")  # what cuda-python 12.9.10 / 13.4.4 (the latest of each) install
OUT = Path(__file__).resolve().parents[1] / "data" / "trt_api.json"

# the C symbols tensorrt.so imports from the TensorRT libraries (nm -D --undefined-only, 10.16 and 11.4)
_STUB_C = """
void* createInferBuilder_INTERNAL(void* a, int b) { return 0; }
void* createInferRefitter_INTERNAL(void* a, void* b, int c) { return 0; }
void* createInferRuntime_INTERNAL(void* a, int b) { return 0; }
void* createNvOnnxParser_INTERNAL(void* a, void* b, int c) { return 0; }
void* createNvOnnxParserRefitter_INTERNAL(void* a, void* b, int c) { return 0; }
void* getBuilderPluginRegistry(int a) { return 0; }
void* getPluginRegistry(void) { return 0; }
int getNvOnnxParserVersion(void) { return 0; }
int getInferLibVersion(void) { return 0; }
int initLibNvInferPlugins(void* a, const char* b) { return 0; }
"""

# runs in the child: prints {"module": [...], "classes": {...}, "bases": {...}, "enums": {...}, "returns": {...}}
_LIST = r"""
import json, re, sys, os
sys.setdlopenflags(os.RTLD_LAZY | os.RTLD_GLOBAL)
import importlib
mod = importlib.import_module(sys.argv[1])
prefix = sys.argv[2]  # the module path in pybind11 signatures, e.g. tensorrt_bindings.tensorrt.
classes, bases, enums, returns = {}, {}, {}, {}
ret = re.compile(r"^\w+\(.*\) -> " + re.escape(prefix) + r"(\w+)\s*$", re.M)
ours = lambda t: isinstance(t, type) and (t.__module__ or "").split(".")[0] == mod.__name__.split(".")[0]

def public(names):
    return sorted(n for n in names if not n.startswith("_"))

def visit(qual, obj, depth):
    members = getattr(obj, "__members__", None)
    if members is not None and hasattr(members, "keys"):  # pybind11 enum or cuda-bindings FastEnum
        enums[qual] = sorted(members.keys())
        return
    classes[qual] = public(vars(obj))  # own names; inherited ones come through "bases"
    b = [t.__name__ for t in obj.__bases__ if ours(t)]
    if b:
        bases[qual] = b
    for n in classes[qual]:
        a = getattr(obj, n, None)
        m = ret.search(getattr(a, "__doc__", None) or "")
        if m and callable(a) and not isinstance(a, type):
            returns[qual + "." + n] = m.group(1)  # first overload's return class
        if ours(a) and depth < 2:
            visit(qual + "." + n, a, depth + 1)  # nested types, e.g. ILogger.Severity

top = public(dir(mod))
for n in top:
    if ours(getattr(mod, n)):
        visit(n, getattr(mod, n), 1)
print(json.dumps({"module": top, "classes": classes, "bases": bases, "enums": enums, "returns": returns}))
"""


def _download(spec: str, dest: Path) -> Path:
    before = set(dest.glob("*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", spec, "-d", str(dest)], check=True)
    new = sorted(set(dest.glob("*.whl")) - before) or sorted(dest.glob(spec.split("==")[0].replace("-", "_") + "*"))
    if not new:
        raise SystemExit(f"pip download {spec}: no wheel")
    return new[0]


def _unzip(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as z:
        z.extractall(dest)
    return dest


def _list(module: str, prefix: str, pythonpath: list[Path], ld_path: Path | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath))}
    if ld_path:
        env["LD_LIBRARY_PATH"] = str(ld_path)
    r = subprocess.run([sys.executable, "-c", _LIST, module, prefix], env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"listing {module} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout)


def _stubs(tmp: Path, major: str) -> Path:
    d = tmp / f"stubs{major}"
    d.mkdir()
    (d / "stub.c").write_text(_STUB_C)
    for lib in ("nvinfer", "nvinfer_plugin", "nvonnxparser"):
        so = f"lib{lib}.so.{major}"
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(d / so), f"-Wl,-soname,{so}", str(d / "stub.c")],
                       check=True)
    return d


def tensorrt_names(version: str, tmp: Path) -> dict:
    major = version.split(".")[0]
    cuda = "cu12" if major == "10" else "cu13"  # what `pip install tensorrt` pulls for each major
    wheel = _download(f"tensorrt-{cuda}-bindings=={version}", tmp)
    root = _unzip(wheel, tmp / f"trt{version}")
    return _list("tensorrt_bindings", "tensorrt_bindings.tensorrt.", [root], _stubs(tmp, major))


def cudart_names(version: str, tmp: Path) -> dict:
    root = _unzip(_download(f"cuda-bindings=={version}", tmp), tmp / f"cb{version}")
    finder = _unzip(_download("cuda-pathfinder", tmp / "pf") if not (tmp / "pf").exists() or
                    not list((tmp / "pf").glob("*.whl")) else sorted((tmp / "pf").glob("*.whl"))[0],
                    tmp / "pathfinder")
    return _list("cuda.bindings.runtime", "cuda.bindings.runtime.", [root, finder])


def split_common(per_version: dict[str, dict]) -> dict:
    """{"versions", "common": names in every version, "only": {version: names only it has}}; each
    section maps "module" to one space-separated string and classes/enums/bases/returns to one
    string per class, so the file stays small and a diff shows what a version added or removed."""
    def flat(d: dict) -> set[tuple]:
        out = {("module", "", n) for n in d["module"]}
        for sec in ("classes", "enums", "bases"):
            out |= {(sec, k, n) for k, v in d[sec].items() for n in v}
        out |= {("returns", k, v) for k, v in d["returns"].items()}
        return out

    def pack(items: set[tuple]) -> dict:
        out: dict = {"module": "", "classes": {}, "enums": {}, "bases": {}, "returns": {}}
        grouped: dict = {}
        for sec, k, n in items:
            grouped.setdefault((sec, k), []).append(n)
        for (sec, k), names in sorted(grouped.items()):
            if sec == "module":
                out["module"] = " ".join(sorted(names))
            else:
                out[sec][k] = " ".join(sorted(names))
        return out

    sets = {v: flat(d) for v, d in per_version.items()}
    common = set.intersection(*sets.values())
    return {"versions": list(per_version), "common": pack(common), "only": {v: pack(s - common) for v, s in sets.items()}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tensorrt", nargs="+", default=list(TENSORRT))
    ap.add_argument("--cuda-bindings", nargs="+", default=list(CUDA_BINDINGS))
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    trt, cb = {}, {}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        (tmp / "pf").mkdir()
        for v in a.tensorrt:
            trt[v] = tensorrt_names(v, tmp)
        for v in a.cuda_bindings:
            cb[v] = cudart_names(v, tmp)
    table = {"how": "python export/tools/trt_api_table.py: names listed from the binding wheels "
                    "(tensorrt-cu12/cu13-bindings, cuda-bindings; pip download --no-deps)",
             "tensorrt": split_common(trt), "cudart": split_common(cb)}
    a.out.write_text(json.dumps(table, sort_keys=True, indent=1) + "\n")
    print(f"wrote {a.out} ({a.out.stat().st_size / 1024:.0f} KiB)", file=sys.stderr)


if __name__ == "__main__":
    main()
