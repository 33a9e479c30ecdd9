"""`tts-export verify` catches each planted fault, naming the file; the lock catches silent changes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from indextts_trt.export.verify import LOCK_NAME, verify


@pytest.fixture
def ck(tiny_ckpt, tmp_path):
    d = tmp_path / "ck"
    shutil.copytree(tiny_ckpt, d)
    return d


def _bad(rep) -> dict[str, str]:
    return {f.rel: " | ".join(f.problems) for f in rep.bad}


def test_a_good_directory_passes_and_gets_a_lock(ck):
    rep = verify(ck)
    assert rep.ok and rep.lock == "written"
    lock = json.loads((ck / LOCK_NAME).read_text())["files"]
    assert len(lock) == 14 and lock["gpt.pth"]["role"] == "gpt"
    assert verify(ck).lock == "matched"


def _drop_key(path: Path, key: str) -> None:
    sd = torch.load(path, weights_only=True)
    del sd[key]
    torch.save(sd, path)


def _plant(ck: Path) -> dict[str, str]:
    """One fault per file; returns {file: a phrase its report must contain}."""
    (ck / "hf_cache/campplus_cn_common.bin").unlink()  # missing
    data = (ck / "s2mel.pth").read_bytes()
    (ck / "s2mel.pth").write_bytes(data[: len(data) // 2])  # truncated
    _drop_key(ck / "gpt.pth", "mel_head.bias")  # a missing key
    sd = torch.load(ck / "hf_cache/bigvgan/bigvgan_generator.pt", weights_only=True)
    sd["generator"]["conv_pre.bias"] = torch.zeros(7)  # a wrong shape
    torch.save(sd, ck / "hf_cache/bigvgan/bigvgan_generator.pt")
    torch.save(torch.zeros(3, 5), ck / "feat2.pt")  # wrong width for the config
    st = torch.load(ck / "wav2vec2bert_stats.pt", weights_only=True)
    torch.save({"mean": st["mean"]}, ck / "wav2vec2bert_stats.pt")  # no "var"
    from safetensors.torch import load_file, save_file

    sd = load_file(ck / "hf_cache/semantic_codec_model.safetensors")
    sd["an.unknown.key"] = torch.zeros(2)
    save_file(sd, ck / "hf_cache/semantic_codec_model.safetensors")  # an unknown key
    (ck / "bpe.model").write_bytes(b"not a sentencepiece model")
    return {
        "hf_cache/campplus_cn_common.bin": "missing",
        "s2mel.pth": "truncated or corrupt",
        "gpt.pth": "missing keys (1): mel_head.bias",
        "hf_cache/bigvgan/bigvgan_generator.pt": "conv_pre.bias: file (7,)",
        "feat2.pt": "expected [",
        "wav2vec2bert_stats.pt": "'mean' and 'var'",
        "hf_cache/semantic_codec_model.safetensors": "unknown keys (1): an.unknown.key",
        "bpe.model": "not a valid SentencePiece model",
    }


def test_every_planted_fault_is_reported_on_its_file(ck):
    want = _plant(ck)
    rep = verify(ck)
    bad = _bad(rep)
    assert sorted(bad) == sorted(want), bad
    for rel, phrase in want.items():
        assert phrase in bad[rel], (rel, bad[rel])
    assert not (ck / LOCK_NAME).exists()  # nothing is pinned while files are bad
    ok = {f.rel for f in rep.files.values() if f.ok}
    assert {"config.yaml", "feat1.pt", "hf_cache/bigvgan/config.json"} <= ok


def test_a_loader_of_several_files_names_the_one_that_is_wrong(ck):
    """w2v-bert reads config.json, model.safetensors and the stats: the report names the bad one
    (a loader stops at its first bad file; the next shows once that one is fixed)."""
    cfg = json.loads((ck / "hf_cache/w2v-bert-2.0/config.json").read_text())
    cfg["hidden_size"] += 1
    (ck / "hf_cache/w2v-bert-2.0/config.json").write_text(json.dumps(cfg))
    bad = _bad(verify(ck))
    assert list(bad) == ["hf_cache/w2v-bert-2.0/config.json"] and "hidden_size" in bad["hf_cache/w2v-bert-2.0/config.json"]


def test_the_lock_catches_a_silent_change_and_update_lock_accepts_it(ck):
    assert verify(ck).ok
    conf = ck / "hf_cache/bigvgan/config.json"
    conf.write_text(conf.read_text() + "\n")  # loads as before; only the bytes changed
    (ck / "extra.safetensors").write_bytes(b"")  # not a layout file: ignored
    (ck / "feat1.safetensors").unlink(missing_ok=True)
    rep = verify(ck)
    assert _bad(rep).keys() == {"hf_cache/bigvgan/config.json"}
    assert "changed since the lock was written" in _bad(rep)["hf_cache/bigvgan/config.json"]
    assert verify(ck, update_lock=True).lock == "updated"
    assert verify(ck).ok
    conf.unlink()
    assert "missing" in _bad(verify(ck))["hf_cache/bigvgan/config.json"]


def test_a_file_that_appears_after_the_lock_is_named(ck):
    from indextts_trt.export.convert import convert

    assert verify(ck).ok
    convert(ck)  # convert adds its twins to the lock itself
    assert verify(ck).ok
    (ck / LOCK_NAME).write_text(json.dumps({**json.loads((ck / LOCK_NAME).read_text()),
                                            "files": {k: v for k, v in json.loads((ck / LOCK_NAME).read_text())
                                                      ["files"].items() if k != "gpt.safetensors"}}))
    assert "not in the lock" in _bad(verify(ck))["gpt.safetensors"]


def test_the_cli_exits_non_zero_naming_each_bad_file(ck):
    _drop_key(ck / "gpt.pth", "mel_head.bias")
    (ck / "feat1.pt").unlink()
    exe = str(Path(sys.executable).with_name("tts-export"))
    r = subprocess.run([exe, "verify", str(ck)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert "2 bad file(s)" in r.stderr and "gpt.pth" in r.stderr and "feat1.pt" in r.stderr
    assert "FAIL  gpt.pth" in r.stdout and "mel_head.bias" in r.stdout and "Traceback" not in r.stderr
    r = subprocess.run([exe, "verify", str(ck / "nope")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "not found" in r.stdout
