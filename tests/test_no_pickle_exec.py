"""No pickle is ever executed: a checkpoint whose pickles carry an object whose ``__reduce__``
would create a file is refused, with the file named, on every path that reads checkpoints
(each loader, verify, convert, `tts-export build`, `tts-run --backend torch`); and no code in the
repository calls torch.load without weights_only=True (an AST walk)."""

from __future__ import annotations

import ast
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from indextts_trt.reference.checkpoint_io import CheckpointError

REPO = Path(__file__).resolve().parents[1]
PICKLES = ("gpt.pth", "s2mel.pth", "wav2vec2bert_stats.pt", "feat1.pt", "feat2.pt",
           "hf_cache/campplus_cn_common.bin", "hf_cache/bigvgan/bigvgan_generator.pt")


class Planted:
    """Unpickling this calls open(sentinel, "w"): the file appears iff the pickle was executed."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return open, (self.sentinel, "w")


def plant(src: Path, dst: Path, sentinel: Path, rel: str, how: str = "zip") -> None:
    """``dst/rel`` = the real content of ``src/rel`` plus a Planted object, saved as ``how``."""
    real = torch.load(src / rel, weights_only=True)
    obj = {**real, "planted": Planted(sentinel)} if isinstance(real, dict) else {"t": real, "planted": Planted(sentinel)}
    if how == "zip":
        torch.save(obj, dst / rel)
    elif how == "legacy":
        torch.save(obj, dst / rel, _use_new_zipfile_serialization=False)
    else:  # a bare pickle stream, not even torch's container
        (dst / rel).write_bytes(pickle.dumps(obj, protocol=2))


@pytest.fixture(scope="module")
def evil(tiny_ckpt, tmp_path_factory):
    d = tmp_path_factory.mktemp("evil")
    out, sentinel = d / "ckpt", d / "EXECUTED"
    shutil.copytree(tiny_ckpt, out)
    for i, rel in enumerate(PICKLES):
        plant(tiny_ckpt, out, sentinel, rel, ("zip", "legacy", "raw")[i % 3])
    # the planted object really runs when unpickled without the guard (the test can fail)
    probe = d / "probe"
    probe.mkdir()
    plant(tiny_ckpt, probe, d / "PROBE_RAN", "feat1.pt")
    torch.load(probe / "feat1.pt", weights_only=False)
    assert (d / "PROBE_RAN").exists()
    return out, sentinel


def _loaders(ck: Path):
    from indextts_trt.reference.bigvgan import load_bigvgan
    from indextts_trt.reference.campplus import load_campplus
    from indextts_trt.reference.s2mel import load_s2mel
    from indextts_trt.reference.unified_voice import load_emo_matrices, load_unified_voice
    from indextts_trt.reference.w2vbert import load_w2vbert
    from indextts_trt.runtime.indextts2.config import load_config

    cfg = load_config(ck / "config.yaml")
    return {
        "gpt.pth": lambda: load_unified_voice(ck / "gpt.pth", cfg),
        "s2mel.pth": lambda: load_s2mel(ck / "s2mel.pth", cfg),
        "wav2vec2bert_stats.pt": lambda: load_w2vbert(ck / "hf_cache/w2v-bert-2.0", ck / "wav2vec2bert_stats.pt", cfg),
        "feat1.pt": lambda: load_emo_matrices(ck / "feat1.pt", ck / "feat2.pt", cfg),
        "hf_cache/campplus_cn_common.bin": lambda: load_campplus(ck / "hf_cache/campplus_cn_common.bin", cfg),
        "hf_cache/bigvgan/bigvgan_generator.pt": lambda: load_bigvgan(ck / "hf_cache/bigvgan", cfg),
    }


@pytest.mark.parametrize("rel", ["gpt.pth", "s2mel.pth", "wav2vec2bert_stats.pt", "feat1.pt",
                                 "hf_cache/campplus_cn_common.bin", "hf_cache/bigvgan/bigvgan_generator.pt"])
def test_every_loader_refuses_a_planted_pickle_by_name(evil, rel):
    ck, sentinel = evil
    with pytest.raises(CheckpointError, match=r"was refused: it holds pickled objects that loading would run as code"
                       ) as e:
        _loaders(ck)[rel]()
    assert str(ck / rel) in str(e.value)
    assert "weights_only" not in str(e.value).replace("weights_only=True", "")  # no advice to switch it off
    assert not sentinel.exists()


def test_verify_names_every_planted_pickle(evil):
    from indextts_trt.export.verify import verify

    ck, sentinel = evil
    rep = verify(ck)
    assert sorted(f.rel for f in rep.bad) == sorted(PICKLES)
    assert all(any("was refused" in p for p in f.problems) for f in rep.bad)
    assert not (ck / "checkpoints.lock.json").exists() and not sentinel.exists()


def test_convert_refuses_and_writes_nothing(evil):
    from indextts_trt.export.convert import ConvertError, convert

    ck, sentinel = evil
    with pytest.raises(ConvertError, match=r"gpt\.pth was refused"):
        convert(ck)
    assert not list(ck.rglob("*.safetensors.tmp")) and not (ck / "gpt.safetensors").exists()
    assert not sentinel.exists()


def _tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def test_build_and_the_torch_backend_refuse_it(evil, tmp_path):
    ck, sentinel = evil
    r = subprocess.run([_tool("tts-export"), "build", "--checkpoints", str(ck), "--out", str(tmp_path / "eng"),
                        "--points", "opt"], capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "was refused" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    r = subprocess.run([_tool("tts-run"), "--backend", "torch", "--checkpoints", str(ck), "--text", "Hello.",
                        "--out", str(tmp_path / "x.wav")], capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "was refused" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "x.wav").exists()
    assert not sentinel.exists()


def test_a_twin_is_read_instead_of_its_planted_pickle(evil, tiny_ckpt, tmp_path):
    """With a safetensors twin beside it, the loaders never open the pickle at all."""
    from indextts_trt.reference.checkpoint_io import save_nested_safetensors
    from indextts_trt.reference.unified_voice import load_unified_voice
    from indextts_trt.runtime.indextts2.config import load_config

    ck, sentinel = evil
    d = tmp_path / "ck"
    shutil.copytree(ck, d)
    save_nested_safetensors(torch.load(tiny_ckpt / "gpt.pth", weights_only=True), d / "gpt.safetensors", "gpt.pth")
    load_unified_voice(d / "gpt.pth", load_config(d / "config.yaml"))
    assert not sentinel.exists()


# ------------------------------------------------------------------------------------ AST walk


def _python_files() -> list[Path]:
    skip = {".venv", ".venv-ci", ".git", "node_modules", "build"}
    return [p for p in REPO.rglob("*.py") if not (set(p.relative_to(REPO).parts) & skip)
            and not p.relative_to(REPO).parts[0].startswith(".venv")]


def _unsafe_loads(tree: ast.AST, src: str) -> list[str]:
    """Calls that could unpickle code: torch.load without weights_only=True (under any alias),
    pickle/dill/joblib loads, numpy.load(allow_pickle=True)."""
    torch_names, load_aliases = {"torch"}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            torch_names |= {a.asname or a.name for a in node.names if a.name == "torch"}
        elif isinstance(node, ast.ImportFrom) and node.module == "torch":
            load_aliases |= {a.asname or a.name for a in node.names if a.name == "load"}
    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        kw = {k.arg: k.value for k in node.keywords}
        where = f"{src}:{node.lineno}"
        is_torch_load = (isinstance(f, ast.Attribute) and f.attr == "load" and isinstance(f.value, ast.Name)
                         and f.value.id in torch_names) or (isinstance(f, ast.Name) and f.id in load_aliases)
        if is_torch_load:
            wo = kw.get("weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                bad.append(f"{where}: torch.load without weights_only=True")
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id in ("pickle", "dill", "joblib",
                                                                                           "cloudpickle") \
                and f.attr in ("load", "loads", "Unpickler"):
            bad.append(f"{where}: {f.value.id}.{f.attr}")
        if isinstance(f, ast.Attribute) and f.attr == "load" and isinstance(f.value, ast.Name) and \
                f.value.id in ("np", "numpy"):
            ap = kw.get("allow_pickle")
            if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                bad.append(f"{where}: numpy.load with allow_pickle")
    return bad


def test_the_ast_walk_catches_what_it_should():
    code = ("import torch as T\nfrom torch import load as L\nimport pickle, numpy as np\n"
            "T.load('a')\nL('b', weights_only=False)\ntorch.load('c', weights_only=True)\npickle.loads(b'')\n"
            "np.load('d', allow_pickle=True)\nT.load('e', weights_only=True)\n")
    found = _unsafe_loads(ast.parse(code), "x.py")
    assert [f.split(": ", 1)[0] for f in found] == ["x.py:4", "x.py:5", "x.py:7", "x.py:8"]


def test_no_code_path_calls_torch_load_without_weights_only():
    files = _python_files()
    assert len(files) > 50 and any(p.name == "checkpoint_io.py" for p in files)
    bad = [b for p in files for b in _unsafe_loads(ast.parse(p.read_text(), str(p)), str(p.relative_to(REPO)))]
    # the one deliberate unsafe load: proving above that the planted object really runs
    bad = [b for b in bad if not b.startswith("tests/test_no_pickle_exec.py")]
    assert bad == []
