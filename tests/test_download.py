"""`tts-export download` against a real HTTP server: tests/hub_server.py on 127.0.0.1, serving the
tiny random checkpoints split across the five repositories, downloaded by the real huggingface_hub
client. Nothing leaves this machine: every URL is the stand-in's, telemetry is off, HF_HOME is a
temporary folder."""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from hub_server import RELEASE, make_hub  # noqa: E402

BIG = "IndexTeam/IndexTTS-2/s2mel.pth"  # the largest tiny file (1.1 MB)


@pytest.fixture(scope="module")
def hub_root(tiny_ckpt, tmp_path_factory):
    return make_hub(tiny_ckpt, tmp_path_factory.mktemp("hub") / "repos")


@contextlib.contextmanager
def hub(root: Path, log: Path, *faults: str):
    """Start the stand-in hub as its own process; yield its URL; stop it."""
    cmd = [sys.executable, str(HERE / "hub_server.py"), "--root", str(root), "--log", str(log),
           "--max-seconds", "300", "--stall-seconds", "60", *faults]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "the stand-in hub did not start within 30 s"
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), url
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def requests(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


def gets(log: Path, path_end: str) -> list[dict]:
    return [r for r in requests(log) if r["method"] == "GET" and r["path"].endswith(path_end)]


def fetched(reqs: list[dict]) -> list[str]:
    """'<repo>/<path>' of every file GET (/<owner>/<name>/resolve/<rev>/<path>)."""
    out = []
    for r in reqs:
        if r["method"] == "GET" and "/resolve/" in r["path"]:
            _, owner, name, _, _, path = r["path"].split("/", 5)
            out.append(f"{owner}/{name}/{path}")
    return out


def env(url: str, home: Path, **extra: str) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    e.update(HF_ENDPOINT=url, HF_HOME=str(home), HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
             **extra)
    return e


def cli(args: list[str], environ: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("tts-export")
    return subprocess.run([str(exe), *args], env=environ, capture_output=True, text=True, timeout=timeout)


def same_tree(a: Path, b: Path) -> None:
    """``b`` holds exactly the released files of ``a``, byte for byte (plus the lock)."""
    want = sorted(RELEASE.values())
    have = sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())
    assert have == sorted(want + ["checkpoints.lock.json"])
    for rel in want:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.fixture
def inproc(monkeypatch, tmp_path):
    """Run download() in this process against the stand-in (``endpoint=``), with the client's
    import-time settings patched, and a guard that fails any name lookup other than loopback."""
    import socket

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    real = socket.getaddrinfo

    def loopback_only(host, *a, **k):
        if host not in ("127.0.0.1", "localhost"):
            raise AssertionError(f"a test tried to reach {host}")
        return real(host, *a, **k)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)

    def run(url: str, out: Path, **kw):
        from indextts_trt.export.download import download

        return download(out, endpoint=url, progress=False, log=lambda s: None, **kw)

    return run


def test_fresh_download_through_hf_endpoint_gives_the_released_layout(hub_root, tiny_ckpt, tmp_path):
    log, out = tmp_path / "hub.log", tmp_path / "ckpt"
    with hub(hub_root, log) as url:
        r = cli(["download", "--out", str(out)], env(url, tmp_path / "home"))
        assert r.returncode == 0, r.stderr
        same_tree(tiny_ckpt, out)
        # only the released files were fetched, each once, none of the decoys
        assert sorted(fetched(requests(log))) == sorted(f"{repo}/{p}" for repo, p in RELEASE)
        assert not (tmp_path / ".ckpt.download").exists() and not list(tmp_path.glob(".ckpt.tmp-*"))
        lock = json.loads((out / "checkpoints.lock.json").read_text())["files"]
        assert lock["hf_cache/semantic_codec_model.safetensors"]["source"]["repo"] == "amphion/MaskGCT"
        assert lock["hf_cache/semantic_codec_model.safetensors"]["source"]["path"] == "semantic_codec/model.safetensors"

        # again: nothing is fetched, nothing is rewritten
        before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
        n = len(requests(log))
        r = cli(["download", "--out", str(out)], env(url, tmp_path / "home"))
        assert r.returncode == 0 and "up to date" in r.stdout, r.stderr
        assert fetched(requests(log)[n:]) == []
        assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*")}

    # offline, complete: no request at all, success
    n = len(requests(log))
    r = cli(["download", "--out", str(out)], env(url, tmp_path / "home", HF_HUB_OFFLINE="1"))
    assert r.returncode == 0 and "up to date" in r.stdout, r.stderr
    assert len(requests(log)) == n


def test_offline_with_an_incomplete_directory_names_the_missing_files(hub_root, tiny_ckpt, tmp_path):
    out = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, out)
    (out / "hf_cache/bigvgan/bigvgan_generator.pt").unlink()
    (out / "feat2.pt").unlink()
    log = tmp_path / "hub.log"
    with hub(hub_root, log) as url:
        r = cli(["download", "--out", str(out)], env(url, tmp_path / "home", HF_HUB_OFFLINE="1"))
    assert r.returncode == 2
    assert "HF_HUB_OFFLINE" in r.stderr and "hf_cache/bigvgan/bigvgan_generator.pt" in r.stderr and "feat2.pt" in r.stderr
    assert "Traceback" not in r.stderr
    assert requests(log) == []
    assert not (out / "feat2.pt").exists()  # nothing was made up


def test_a_cut_connection_resumes_with_range_in_the_same_run(hub_root, tiny_ckpt, tmp_path, inproc):
    log, out = tmp_path / "hub.log", tmp_path / "ckpt"
    with hub(hub_root, log, "--cut", f"{BIG}:300000") as url:
        rep = inproc(url, out)
    same_tree(tiny_ckpt, out)
    g = gets(log, "/s2mel.pth")
    assert [(x["range"], x["sent"]) for x in g] == [(None, 300000), ("bytes=300000-", 1115483 - 300000)]
    assert rep.fetched_bytes == sum((tiny_ckpt / rel).stat().st_size for rel in RELEASE.values())


def test_a_killed_download_resumes_from_its_part_file(hub_root, tiny_ckpt, tmp_path):
    log, out = tmp_path / "hub.log", tmp_path / "ckpt"
    stage = tmp_path / ".ckpt.download" / "IndexTeam--IndexTTS-2"
    with hub(hub_root, log, "--stall", f"{BIG}:400000") as url:
        p = subprocess.Popen([str(Path(sys.executable).with_name("tts-export")), "download", "--out", str(out)],
                             env=env(url, tmp_path / "home"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                parts = list(stage.glob("s2mel.pth.*.part"))
                if parts and parts[0].stat().st_size >= 400000:
                    break
                assert p.poll() is None, "the download ended before the stall"
                time.sleep(0.1)
            else:
                pytest.fail("the download never reached the stalled byte")
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
        assert not out.exists()  # nothing half-written under the final name
        assert parts[0].stat().st_size == 400000
        r = cli(["download", "--out", str(out)], env(url, tmp_path / "home"))
        assert r.returncode == 0, r.stderr
        assert "resumed at byte 400000" in r.stdout
    same_tree(tiny_ckpt, out)
    assert [x["range"] for x in gets(log, "/s2mel.pth")] == [None, "bytes=400000-"]
    assert len(gets(log, "/gpt.pth")) == 1  # finished before the kill: kept in the staging folder


def test_a_corrupted_file_is_refused_by_name_and_the_rest_is_kept(hub_root, tiny_ckpt, tmp_path, inproc):
    from indextts_trt.export.download import DownloadError

    log, out = tmp_path / "hub.log", tmp_path / "ckpt"
    with hub(hub_root, log, "--corrupt", "amphion/MaskGCT/semantic_codec/model.safetensors") as url:
        with pytest.raises(DownloadError, match=r"amphion/MaskGCT/semantic_codec/model\.safetensors: the downloaded "
                                                r"file does not match the hub's ETag"):
            inproc(url, out)
    assert not out.exists()
    assert not list((tmp_path / ".ckpt.download").rglob("*.part"))  # the bad bytes are gone
    codec = "amphion/MaskGCT/semantic_codec/model.safetensors"
    n = len(requests(log))
    good = set(fetched(requests(log))) - {codec}
    assert codec in fetched(requests(log)) and len(good) >= 5
    with hub(hub_root, log) as url:
        rep = inproc(url, out)
    same_tree(tiny_ckpt, out)
    again = fetched(requests(log)[n:])
    assert codec in again and not good & set(again)  # what had arrived intact is not fetched again
    assert sorted(good | set(again)) == sorted(f"{repo}/{p}" for repo, p in RELEASE)
    assert {g.how for g in rep.files if f"{g.wanted.repo}/{g.wanted.path}" in good} == {"staged"}


def test_a_changed_file_on_the_hub_replaces_the_local_one(hub_root, tiny_ckpt, tmp_path, inproc):
    """A directory assembled by hand, one file differing from the hub: only that one is fetched,
    the rest is kept in place, and a converted twin of the replaced pickle is dropped as stale."""
    from indextts_trt.export.convert import convert

    out = tmp_path / "ckpt"
    shutil.copytree(tiny_ckpt, out)
    (out / "qwen0.6bemo4-merge").mkdir()
    (out / "qwen0.6bemo4-merge" / "keep.txt").write_text("not ours")
    import torch

    feat1 = out / "feat1.pt"
    torch.save(torch.load(feat1, weights_only=True) + 1, feat1)  # another release of this file
    convert(out)  # feat1.safetensors is the twin of that other release
    log = tmp_path / "hub.log"
    with hub(hub_root, log) as url:
        rep = inproc(url, out)
    assert {g.wanted.target: g.how for g in rep.files}["feat1.pt"] == "downloaded"
    assert [g.how for g in rep.files].count("present") == len(RELEASE) - 1
    assert feat1.read_bytes() == (tiny_ckpt / "feat1.pt").read_bytes()
    assert not (out / "feat1.safetensors").exists() and (out / "gpt.safetensors").exists()
    assert (out / "qwen0.6bemo4-merge" / "keep.txt").read_text() == "not ours"
    from indextts_trt.export.verify import verify

    assert verify(out).ok  # the lock still holds the kept twins


def test_an_existing_hf_cache_layout_is_migrated(hub_root, tiny_ckpt, tmp_path, inproc, monkeypatch):
    """Upstream's old layout: hf_cache/models--<owner>--<name>/snapshots/<commit>/..., written here by
    the real client (hf_hub_download into a cache_dir). Online those copies are checked against the
    hub's ETags and copied, not downloaded; offline they complete a directory on their own."""
    from huggingface_hub import constants, hf_hub_download

    out = tmp_path / "ckpt"
    log = tmp_path / "hub.log"
    with hub(hub_root, log) as url:
        for repo, path in [("nvidia/bigvgan_v2_22khz_80band_256x", "bigvgan_generator.pt"),
                           ("nvidia/bigvgan_v2_22khz_80band_256x", "config.json"),
                           ("facebook/w2v-bert-2.0", "model.safetensors")]:
            hf_hub_download(repo, path, cache_dir=out / "hf_cache", endpoint=url)
        n = len(requests(log))
        rep = inproc(url, out)
        how = {g.wanted.target: g.how for g in rep.files}
        assert how["hf_cache/bigvgan/bigvgan_generator.pt"].startswith("migrated from ")
        assert how["hf_cache/w2v-bert-2.0/model.safetensors"].startswith("migrated from ")
        got = fetched(requests(log)[n:])
        assert "nvidia/bigvgan_v2_22khz_80band_256x/bigvgan_generator.pt" not in got
        assert "facebook/w2v-bert-2.0/model.safetensors" not in got and "funasr/campplus/campplus_cn_common.bin" in got
    old_cache = ("hf_cache/models--", "hf_cache/.locks", "hf_cache/CACHEDIR.TAG")
    ours = sorted(r for p in out.rglob("*") if p.is_file() and not (r := p.relative_to(out).as_posix()).startswith(old_cache))
    assert ours == sorted(list(RELEASE.values()) + ["checkpoints.lock.json"])
    assert (out / "hf_cache/bigvgan/bigvgan_generator.pt").read_bytes() == \
        (tiny_ckpt / "hf_cache/bigvgan/bigvgan_generator.pt").read_bytes()
    assert any((out / "hf_cache").glob("models--*"))  # the old cache is left as it was

    # offline: a directory missing the vocoder is completed from the default cache (HF_HUB_CACHE)
    out2 = tmp_path / "ckpt2"
    shutil.copytree(tiny_ckpt, out2)
    shutil.rmtree(out2 / "hf_cache" / "bigvgan")
    shutil.copytree(out / "hf_cache" / "models--nvidia--bigvgan_v2_22khz_80band_256x",
                    Path(constants.HF_HUB_CACHE) / "models--nvidia--bigvgan_v2_22khz_80band_256x", symlinks=True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    n = len(requests(log))
    rep = inproc("http://127.0.0.1:9", out2)
    assert {g.wanted.target: g.how for g in rep.files}["hf_cache/bigvgan/config.json"].startswith("migrated from ")
    assert len(requests(log)) == n
    assert (out2 / "hf_cache/bigvgan/bigvgan_generator.pt").read_bytes() == \
        (tiny_ckpt / "hf_cache/bigvgan/bigvgan_generator.pt").read_bytes()


def test_gated_repository_needs_the_token(hub_root, tiny_ckpt, tmp_path, inproc):
    from indextts_trt.export.download import DownloadError

    log, out = tmp_path / "hub.log", tmp_path / "ckpt"
    with hub(hub_root, log, "--gated", "funasr/campplus=s3cret") as url:
        with pytest.raises(DownloadError, match=r"funasr/campplus is gated: .*--token"):
            inproc(url, out, token="wrong")
        inproc(url, out, token="s3cret")
    same_tree(tiny_ckpt, out)
    assert all(x["auth"] for x in requests(log) if "campplus" in x["path"])


def test_clear_errors_for_unknown_revisions_repos_and_modelscope(hub_root, tmp_path, inproc):
    from indextts_trt.export.download import DownloadError

    out = tmp_path / "ckpt"
    with hub(hub_root, tmp_path / "hub.log") as url:
        with pytest.raises(DownloadError, match=r"IndexTeam/IndexTTS-2: revision 'v9' not found"):
            inproc(url, out, revision="v9")
        with pytest.raises(DownloadError, match=r"Nobody/Nothing: repository not found"):
            inproc(url, out, model="Nobody/Nothing")
    partial = tmp_path / "partial"  # a repository without one of the released files
    shutil.copytree(hub_root, partial)
    (partial / "funasr/campplus/campplus_cn_common.bin").unlink()
    with hub(partial, tmp_path / "hub2.log") as url:
        with pytest.raises(DownloadError, match=r"funasr/campplus: campplus_cn_common\.bin not found in the repository"):
            inproc(url, out)
    with pytest.raises(DownloadError, match=r"modelscope is not supported.*HF_ENDPOINT=https://hf-mirror.com"):
        inproc("http://127.0.0.1:9", out, source="modelscope")
    with pytest.raises(DownloadError, match=r"cannot reach http://127.0.0.1:9 .*HF_ENDPOINT"):
        inproc("http://127.0.0.1:9", out)
    assert not out.exists()


def test_the_stand_in_answers_the_clients_listing_calls(hub_root, tmp_path, monkeypatch):
    """What snapshot_download and get_paths_info call (model info, tree, paths-info, resolve)."""
    import socket

    from huggingface_hub import HfApi, constants, snapshot_download

    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    real = socket.getaddrinfo
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: real(host, *a, **k) if host == "127.0.0.1"
                        else pytest.fail(f"a test tried to reach {host}"))
    with hub(hub_root, tmp_path / "hub.log") as url:
        d = snapshot_download("amphion/MaskGCT", local_dir=tmp_path / "snap", endpoint=url,
                              allow_patterns=["semantic_codec/*"], cache_dir=tmp_path / "cache")
        info = HfApi(endpoint=url).get_paths_info("facebook/w2v-bert-2.0", ["model.safetensors", "config.json"])
    assert (Path(d) / "semantic_codec/model.safetensors").read_bytes() == \
        (hub_root / "amphion/MaskGCT/semantic_codec/model.safetensors").read_bytes()
    assert not (Path(d) / "acoustic_codec").exists()
    by = {f.path: f for f in info}
    assert by["model.safetensors"].lfs.size == (hub_root / "facebook/w2v-bert-2.0/model.safetensors").stat().st_size
    assert by["config.json"].lfs is None


def test_a_planted_pickle_on_the_hub_is_refused_and_never_run(tiny_ckpt, tmp_path, inproc):
    from test_no_pickle_exec import plant

    from indextts_trt.export.download import DownloadError

    ck, sentinel = tmp_path / "ck", tmp_path / "EXECUTED"
    shutil.copytree(tiny_ckpt, ck)
    plant(tiny_ckpt, ck, sentinel, "gpt.pth")
    root = make_hub(ck, tmp_path / "repos")
    with hub(root, tmp_path / "hub.log") as url:
        with pytest.raises(DownloadError, match=r"FAIL  gpt\.pth.*\n.*was refused"):
            inproc(url, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not sentinel.exists()
