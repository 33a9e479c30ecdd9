"""``tts-export download``: the released IndexTTS-2 checkpoint directory, from its five hub repositories.

Upstream assembles the directory at start-up (indextts/utils/model_download.py,
``ensure_models_available``): the model repository into the directory, then into ``hf_cache/``
facebook/w2v-bert-2.0 (config.json, preprocessor_config.json, model.safetensors — not its 2.3 GB
fairseq2 pickle conformer_shaw.pt), amphion/MaskGCT's semantic_codec/model.safetensors as
semantic_codec_model.safetensors, funasr/campplus's campplus_cn_common.bin and the vocoder named
by config.yaml (nvidia/bigvgan_v2_22khz_80band_256x: config.json, bigvgan_generator.pt). We fetch
exactly the files ``CheckpointLayout.required_files`` names (the Qwen emotion LM is not used).

For each file, in order: the copy already in the directory, one finished earlier in the staging
folder, a copy in a Hugging Face cache layout (``<dir>/hf_cache/models--*`` or ``HF_HUB_CACHE``,
migrated as upstream does), and only then a download. Online, every reused copy must hash to the
hub's ETag. Downloads go to the staging sibling ``.<dir>.download/`` and resume from it after an
interruption; the directory is assembled in a temporary sibling, verified (export/verify.py:
every loader, sha256 lock) and renamed into place, so nothing half-written ever has the final name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from indextts_trt.runtime.config import ConfigError
from indextts_trt.runtime.indextts2.config import IndexTTSConfig, load_config
from indextts_trt.runtime.indextts2.layout import CheckpointLayout

from .hub import Hub, HubError, RemoteFile, cache_candidates, digests, etag_matches
from .verify import (LOCK_NAME, OPTIONAL_FILES, PICKLE_SUFFIXES, VerifyReport, read_lock, twin_entry,
                     twin_source_sha256, umask, verify, write_lock)

MODEL_REPO = "IndexTeam/IndexTTS-2"
# where each auxiliary file comes from (upstream ensure_models_available); None: config.yaml's vocoder.name
AUX_SOURCES: dict[str, tuple[str | None, str]] = {
    "w2v_bert_config": ("facebook/w2v-bert-2.0", "config.json"),
    "w2v_bert_weights": ("facebook/w2v-bert-2.0", "model.safetensors"),
    "semantic_codec": ("amphion/MaskGCT", "semantic_codec/model.safetensors"),
    "campplus": ("funasr/campplus", "campplus_cn_common.bin"),
    "bigvgan_config": (None, "config.json"),
    "bigvgan_weights": (None, "bigvgan_generator.pt"),
}
EXTRA_SOURCES = {OPTIONAL_FILES[0]: ("facebook/w2v-bert-2.0", "preprocessor_config.json")}
MODELSCOPE = ("--source modelscope is not supported: its client (modelscope 1.40: a 6 MB wheel of 2 900 files, plus "
              "modelscope-hub and cryptography) cannot be tested here, and two of the five repositories have other "
              "names and layouts there. From mainland China use a Hugging Face mirror with the same client: "
              "HF_ENDPOINT=https://hf-mirror.com tts-export download --out checkpoints/")


class DownloadError(RuntimeError):
    pass


@dataclass(frozen=True)
class Wanted:
    target: str  # path inside the checkpoint directory
    role: str  # CheckpointLayout.required_files name ("" for an optional file)
    repo: str
    path: str  # path inside the repository
    revision: str


@dataclass
class Got:
    wanted: Wanted
    file: Path | None  # where the bytes are now; None: not found (offline)
    how: str  # present | staged | migrated from <path> | downloaded | resumed at <byte> | missing
    remote: RemoteFile | None = None
    sha256: str | None = None
    resumed_at: int = 0

    def source(self) -> dict:
        w, r = self.wanted, self.remote
        return {"repo": w.repo, "path": w.path, "revision": w.revision,
                **({"commit": r.commit, "etag": r.etag} if r else {})}


@dataclass
class DownloadReport:
    out: Path
    files: list[Got] = field(default_factory=list)
    up_to_date: bool = False
    fetched_bytes: int = 0
    seconds: float = 0.0
    verify: VerifyReport | None = None


def plan(cfg: IndexTTSConfig, model: str = MODEL_REPO, revision: str | None = None) -> list[Wanted]:
    """Every file to fetch, from CheckpointLayout.required_files (config.yaml names the model's own files)."""
    root = Path("/")
    out = []
    for role, path in CheckpointLayout(root).required_files(cfg).items():
        target = path.relative_to(root).as_posix()
        repo, remote = AUX_SOURCES.get(role, (model, target))
        repo = repo or cfg.vocoder.name
        out.append(Wanted(target, role, repo, remote, (revision or "main") if repo == model else "main"))
    out += [Wanted(t, "", repo, p, "main") for t, (repo, p) in EXTRA_SOURCES.items()]
    return out


def staging_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.download"


class _Finder:
    """Finds (or downloads) each wanted file; see the module docstring for the order."""

    def __init__(self, out: Path, hub: Hub, log: Callable[[str], None]):
        from huggingface_hub import constants

        self.out, self.hub, self.log = out, hub, log
        self.stage = staging_dir(out)
        try:
            self.lock = (read_lock(out) or {}).get("files", {}) if out.is_dir() else {}
        except ConfigError:
            self.lock = {}  # an unreadable lock: every present file is hashed instead
        self.caches = [out / "hf_cache", Path(constants.HF_HUB_CACHE)]

    def staged(self, w: Wanted) -> Path:
        return self.stage / w.repo.replace("/", "--") / w.path

    def _accept(self, f: Path, rf: RemoteFile | None, blob_etag: str | None = None) -> tuple[bool, str | None]:
        etag = rf.etag if rf else blob_etag
        if rf is not None and f.stat().st_size != rf.size:
            return False, None
        if etag is None:
            return True, None  # offline, nothing to compare with: the loaders check it
        sha, git = digests(f)
        return etag_matches(etag, sha, git) is not False, sha

    def find(self, w: Wanted) -> Got:
        rf = None if self.hub.offline else self.hub.stat(w.repo, w.path, w.revision)
        cur = self.out / w.target
        if cur.is_file():
            pinned = self.lock.get(w.target, {})
            if rf is not None and pinned.get("source", {}).get("etag") == rf.etag and pinned.get("size") == rf.size \
                    and cur.stat().st_size == rf.size:
                return Got(w, cur, "present", rf, pinned.get("sha256"))
            ok, sha = self._accept(cur, rf)
            if ok:
                return Got(w, cur, "present", rf, sha or pinned.get("sha256"))
        st = self.staged(w)
        if st.is_file():
            ok, sha = self._accept(st, rf)
            if ok:
                return Got(w, st, "staged", rf, sha)
        for cand, blob_etag in cache_candidates(w.repo, w.path, rf.commit if rf else None, self.caches):
            ok, sha = self._accept(cand, rf, blob_etag)
            if ok:
                return Got(w, cand, f"migrated from {cand}", rf, sha)
        return Got(w, None, "missing", rf)

    def fetch(self, g: Got) -> None:
        t0 = time.perf_counter()
        g.sha256, g.resumed_at = self.hub.fetch(g.remote, self.staged(g.wanted))
        g.file = self.staged(g.wanted)
        g.how = f"resumed at byte {g.resumed_at}" if g.resumed_at else "downloaded"
        self.log(f"  {g.how:<22s} {g.wanted.target}  ({g.wanted.repo}: {g.wanted.path}, "
                 f"{g.remote.size / 2**20:.2f} MiB, {time.perf_counter() - t0:.1f} s)")


def download(out: str | Path, *, model: str = MODEL_REPO, revision: str | None = None, source: str = "hf",
             token: str | None = None, endpoint: str | None = None, progress: bool = True,
             log: Callable[[str], None] = print) -> DownloadReport:
    """Bring ``out`` to the released layout of ``model`` at ``revision``; raises DownloadError naming the file."""
    if source == "modelscope":
        raise DownloadError(MODELSCOPE)
    if source != "hf":
        raise DownloadError(f"--source {source!r}: use hf (mirrors through HF_ENDPOINT) or modelscope")
    t0 = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DownloadError(f"--out {out} exists and is not a directory")
    hub = Hub(endpoint, token, progress)
    finder = _Finder(out, hub, log)
    rep = DownloadReport(out)
    try:
        first = finder.find(Wanted("config.yaml", "config", model, "config.yaml", revision or "main"))
        if first.file is None and first.remote is not None:
            finder.fetch(first)
        if first.file is None:
            raise DownloadError(_offline_message(out, [first]))
        cfg = load_config(first.file)
        rep.files = [first] + [finder.find(w) for w in plan(cfg, model, revision) if w.target != "config.yaml"]
        missing = [g for g in rep.files if g.file is None]
        if hub.offline and missing:
            raise DownloadError(_offline_message(out, missing))
        # downloads are linked into place, migrated copies are copied
        need = sum(g.remote.size for g in missing) + sum(g.file.stat().st_size for g in rep.files
                                                         if g.how.startswith("migrated"))
        free = shutil.disk_usage(out.parent if out.parent.exists() else Path.cwd()).free
        if need > free:
            raise DownloadError(f"{need / 2**30:.2f} GiB to write, {free / 2**30:.2f} GiB free next to {out}")
        for g in missing:
            finder.fetch(g)
        rep.fetched_bytes = sum(g.remote.size - g.resumed_at for g in rep.files
                                if g.how == "downloaded" or g.how.startswith("resumed"))
    except (HubError, ConfigError) as e:
        raise DownloadError(str(e)) from None

    if all(g.how == "present" for g in rep.files) and finder.lock and (hub.offline or _pinned(rep.files, finder.lock)):
        rep.up_to_date = True
    else:
        rep.verify = _assemble(out, rep.files, log)
    shutil.rmtree(finder.stage, ignore_errors=True)
    rep.seconds = time.perf_counter() - t0
    return rep


def _pinned(files: list[Got], lock: dict) -> bool:
    return all(lock.get(g.wanted.target, {}).get("source", {}).get("etag") == g.remote.etag for g in files)


def _offline_message(out: Path, missing: list[Got]) -> str:
    names = ", ".join(f"{g.wanted.target} ({g.wanted.repo}: {g.wanted.path})" for g in missing)
    return (f"HF_HUB_OFFLINE is set and {len(missing)} file(s) are neither in {out} nor in a Hugging Face cache: "
            f"{names}. Unset HF_HUB_OFFLINE to download them")


def _place(src: Path, dst: Path, copy: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not copy:
        try:
            os.link(src, dst)  # the staged/present file itself: no copy, and the original stays for a re-run
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


def _assemble(out: Path, files: list[Got], log: Callable[[str], None]) -> VerifyReport:
    """Lay the files out in a temporary sibling, verify it, then move it (or its files) into ``out``."""
    from indextts_trt.reference.checkpoint_io import converted_path

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    os.chmod(tmp, 0o777 & ~umask())  # mkdtemp made it 0700; the directory keeps it after the rename
    try:
        for g in files:
            _place(g.file, tmp / g.wanted.target, copy=g.how.startswith("migrated"))
        known = {g.wanted.target: g.sha256 for g in files if g.sha256}
        rep = verify(tmp, update_lock=True, known_sha256=known, sources={g.wanted.target: g.source() for g in files},
                     written_by="tts-export download")
        if not rep.ok:
            raise DownloadError("the downloaded files do not load (nothing was written to "
                                f"{out}):\n" + "\n".join(rep.lines()))
        rep.root = out
        if not out.exists() or not any(out.iterdir()):
            if out.exists():
                out.rmdir()
            tmp.rename(out)  # the whole directory appears at once
            return rep
        # ``out`` holds other things (the Qwen LM, an old HF cache, voices): replace file by file,
        # each atomically, the lock last; a converted twin of a replaced pickle is stale
        new_lock = read_lock(tmp)["files"]
        old_lock = (read_lock(out) or {}).get("files", {}) if (out / LOCK_NAME).is_file() else {}
        for g in files:
            t = g.wanted.target
            (out / t).parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp / t, out / t)
            twin = converted_path(out / t)
            if t.endswith(PICKLE_SUFFIXES) and twin.is_file():
                rel = twin.relative_to(out).as_posix()
                if twin_source_sha256(twin) == new_lock[t]["sha256"]:  # still the twin of this very file
                    entry = twin_entry(twin, g.wanted.role, t, new_lock[t]["sha256"])
                    # pinned before with other contents: keep the old pin, so verify reports the change
                    new_lock[rel] = old_lock.get(rel, entry)
                else:
                    twin.unlink()
                    log(f"  removed stale {rel} (converted from another {t}); run `tts-export convert` again")
        write_lock(out, new_lock, "tts-export download")
        return rep
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
