"""``tts-export verify DIR``: is a checkpoint directory complete, safe to read and what config.yaml says?

Per file: present; readable without running code (pickles through ``torch.load(weights_only=True)``
only, safetensors/JSON/YAML/SentencePiece by their own parsers); every key and shape as the
config requires, which is checked by loading each model with the reference's own loaders (their
``load_strict`` names every missing, unknown or mis-shaped key, so no key list is restated
here; a loader that reads several files stops at the first bad one, which the report names); a
safetensors twin converted from *this* pickle; and the sha256 pinned in
``checkpoints.lock.json``, so a later silent change is caught. The lock is written the first
time everything passes (and by ``tts-export download``/``convert``); ``update_lock`` accepts the
current contents.
"""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from indextts_trt.runtime.config import ConfigError
from indextts_trt.runtime.files import PICKLE_SUFFIXES, sha256_file, write_bytes_atomic
from indextts_trt.runtime.indextts2.config import IndexTTSConfig, load_config
from indextts_trt.runtime.indextts2.layout import CheckpointLayout

LOCK_NAME = "checkpoints.lock.json"
LOCK_SCHEMA = 1
# in the released layout, read by no loader of ours (upstream's SeamlessM4T feature extractor)
OPTIONAL_FILES = ("hf_cache/w2v-bert-2.0/preprocessor_config.json",)


@dataclass
class FileCheck:
    rel: str  # path inside the checkpoint directory
    role: str  # CheckpointLayout.required_files short name ("" for an optional file)
    problems: list[str] = field(default_factory=list)
    sha256: str | None = None
    size: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    root: Path
    files: dict[str, FileCheck]
    lock: str  # what happened to the lock: "matched", "written", "updated", "not written (...)"
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.files.values())

    @property
    def bad(self) -> list[FileCheck]:
        return [f for f in self.files.values() if not f.ok]

    def lines(self) -> list[str]:
        out = []
        for f in self.files.values():
            size = f"{f.size / 2**20:9.2f} MiB" if f.size is not None else " " * 13
            tag = f"  {'ok  ' if f.ok else 'FAIL'}  {f.rel:<52s} {size}  {f.role}"
            out.append(tag)
            out.extend(f"          {p}" for p in f.problems)
        return out


# ------------------------------------------------------------------ which loader reads which file


def _load_tokenizer(lay: CheckpointLayout, cfg: IndexTTSConfig) -> None:
    from indextts_trt.runtime.text import TextError, TextTokenizer

    try:
        tok = TextTokenizer(lay.bpe_model())
    except TextError as e:
        raise ConfigError(str(e)) from None
    if tok.vocab_size > cfg.gpt.number_text_tokens:  # ids index the GPT's text embedding
        raise ConfigError(f"{lay.bpe_model()}: {tok.vocab_size} pieces, more than gpt.number_text_tokens "
                          f"{cfg.gpt.number_text_tokens} of config.yaml")


def _loaders() -> list[tuple[tuple[str, ...], Callable[[CheckpointLayout, IndexTTSConfig], object]]]:
    """(the roles a loader reads, the loader): the reference's own model table (reference/loaders.py),
    the emotion matrices and the tokenizer, imported lazily."""
    from indextts_trt.reference.loaders import MODELS
    from indextts_trt.reference.unified_voice import load_emo_matrices

    return [
        (("bpe_model",), _load_tokenizer),
        (("spk_matrix", "emo_matrix"),
         lambda lay, cfg: load_emo_matrices(lay.spk_matrix(cfg), lay.emo_matrix(cfg), cfg)),
        *((tuple(f for f in m.files if f != "config"), m.load) for m in MODELS.values()),
    ]


# ------------------------------------------------------------------------------------- the lock


def read_lock(root: str | Path) -> dict | None:
    """The lock of ``root`` ({"schema", "files": {rel: {"sha256", "size", ...}}}), or None."""
    p = Path(root) / LOCK_NAME
    if not p.is_file():
        return None
    try:
        lock = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p} is not valid JSON ({e}); delete it and run `tts-export verify` again") from None
    if not isinstance(lock, dict) or lock.get("schema") != LOCK_SCHEMA or not isinstance(lock.get("files"), dict):
        raise ConfigError(f"{p}: not a schema-{LOCK_SCHEMA} lock file; delete it and run `tts-export verify` again")
    return lock


def write_lock(root: str | Path, entries: Mapping[str, dict], written_by: str) -> None:
    lock = {"schema": LOCK_SCHEMA, "written_by": written_by,
            "note": "sha256 of every checkpoint file; `tts-export verify` fails when one changes",
            "files": {k: entries[k] for k in sorted(entries)}}
    write_bytes_atomic(Path(root) / LOCK_NAME, (json.dumps(lock, indent=1) + "\n").encode())
    os.chmod(Path(root) / LOCK_NAME, 0o666 & ~umask())  # mkstemp made it 0600; it is no secret


def umask() -> int:
    um = os.umask(0)
    os.umask(um)
    return um


def twin_entry(twin: Path, role: str, source_rel: str, source_sha256: str) -> dict:
    """The lock entry of a safetensors twin (written by convert, carried over by download)."""
    return {"sha256": sha256_file(twin), "size": twin.stat().st_size, "role": f"{role} (safetensors twin, read first)",
            "source": {"converted_from": source_rel, "source_sha256": source_sha256}}


def twin_source_sha256(twin: Path) -> str | None:
    """The sha256 of the pickle a twin was converted from, as the twin itself records it."""
    from indextts_trt.reference.checkpoint_io import CheckpointError, safetensors_metadata

    try:
        return safetensors_metadata(twin).get("indextts_trt.source_sha256")
    except CheckpointError:
        return None


# ------------------------------------------------------------------------------------ verify


def _check_pickle(path: Path, fc: FileCheck) -> None:
    from indextts_trt.reference.checkpoint_io import CheckpointError, torch_load

    try:
        torch_load(path, fc.role)
    except CheckpointError as e:
        fc.problems.append(str(e))


def _check_twin(twin: Path, src: FileCheck, fc: FileCheck) -> None:
    from indextts_trt.reference.checkpoint_io import CheckpointError, safetensors_metadata

    try:
        meta = safetensors_metadata(twin)
    except CheckpointError as e:
        fc.problems.append(str(e))
        return
    want = meta.get("indextts_trt.source_sha256")
    if src.sha256 is not None and want != src.sha256:
        fc.problems.append(f"stale: converted from another {src.rel} (source sha256 {str(want)[:12]}…, "
                           f"now {src.sha256[:12]}…), and the loaders read it first; run `tts-export convert` again")


def verify(root: str | Path, *, update_lock: bool = False, known_sha256: Mapping[str, str] | None = None,
           sources: Mapping[str, dict] | None = None, written_by: str = "tts-export verify",
           log: Callable[[str], None] | None = None) -> VerifyReport:
    """Check every file of the checkpoint directory ``root``; see the module docstring.

    ``known_sha256``: {rel: sha256} already computed (by a download) for files not changed since.
    ``sources``: {rel: where the file came from} to record in the lock.
    """
    from indextts_trt.reference.checkpoint_io import CheckpointError, converted_path

    t0 = time.perf_counter()
    root = Path(root)
    lay = CheckpointLayout(root)
    files: dict[str, FileCheck] = {}
    if not root.is_dir():
        files["."] = FileCheck(".", "", [f"checkpoint directory not found: {root}"])
        return VerifyReport(root, files, "not written (no directory)")
    cfg_check = files.setdefault("config.yaml", FileCheck("config.yaml", "config"))
    try:
        cfg = load_config(lay.config())
    except ConfigError as e:
        cfg_check.problems.append(str(e))
        return VerifyReport(root, files, "not written (config.yaml unreadable)")

    required = lay.required_files(cfg)
    roles: dict[str, list[FileCheck]] = {}
    paths: dict[str, Path] = {}
    for role, path in required.items():
        rel = path.relative_to(root).as_posix()
        fc = files.setdefault(rel, FileCheck(rel, role))
        roles.setdefault(role, []).append(fc)
        paths[rel] = path
        if not path.is_file():
            fc.problems.append(f"missing ({role}: {path})")
        twin = converted_path(path)
        if path.suffix in PICKLE_SUFFIXES and twin.is_file():
            trel = twin.relative_to(root).as_posix()
            files[trel] = FileCheck(trel, f"{role} (safetensors twin, read first)")
            roles[role].append(files[trel])
            paths[trel] = twin
    for rel in OPTIONAL_FILES:
        if (root / rel).is_file():
            files[rel] = FileCheck(rel, "")
            paths[rel] = root / rel

    known = dict(known_sha256 or {})
    for rel, fc in files.items():
        if rel in paths and paths[rel].is_file():
            fc.size = paths[rel].stat().st_size
            fc.sha256 = known.get(rel) or sha256_file(paths[rel])
            if log:
                log(f"hashed {rel}")

    # readable without code: every pickle through torch.load(weights_only=True), even when its twin
    # is what the loaders read; every twin converted from the pickle beside it
    for role, checks in roles.items():
        src = checks[0]
        if src.ok and paths[src.rel].suffix in PICKLE_SUFFIXES:
            _check_pickle(paths[src.rel], src)
        for twin in checks[1:]:
            _check_twin(paths[twin.rel], src, twin)

    # keys and shapes: the real loaders, one model at a time (full size: GBs each)
    import torch

    for needs, load in _loaders():
        checks = [fc for r in needs for fc in roles.get(r, [])]
        if any("missing (" in p for fc in checks for p in fc.problems):
            continue
        try:
            with torch.no_grad():
                model = load(lay, cfg)
            del model
        except (CheckpointError, ConfigError) as e:
            msg = str(e)
            named = [fc for fc in checks if str(paths[fc.rel]) in msg] or checks
            for fc in named:
                if msg not in fc.problems:
                    fc.problems.append(msg)
        gc.collect()
        if log:
            log(f"loaded {', '.join(needs)}")

    lock_state = _apply_lock(root, files, update_lock, sources or {}, written_by)
    return VerifyReport(root, files, lock_state, time.perf_counter() - t0)


def _apply_lock(root: Path, files: dict[str, FileCheck], update: bool, sources: Mapping[str, dict],
                written_by: str) -> str:
    try:
        lock = read_lock(root)
    except ConfigError as e:
        files.setdefault(LOCK_NAME, FileCheck(LOCK_NAME, "lock")).problems.append(str(e))
        return "unreadable"
    old = lock["files"] if lock else {}
    if lock and not update:
        hint = "(if on purpose: `tts-export verify --update-lock`)"
        for rel, entry in old.items():
            fc = files.get(rel)
            if fc is None or fc.sha256 is None:
                files.setdefault(rel, FileCheck(rel, "")).problems.append(f"in the lock, but missing {hint}")
            elif entry.get("sha256") != fc.sha256:
                fc.problems.append(f"changed since the lock was written: sha256 {str(entry.get('sha256'))[:12]}… "
                                   f"→ {fc.sha256[:12]}… {hint}")
        for rel, fc in files.items():
            if rel not in old and fc.sha256 is not None:
                fc.problems.append(f"not in the lock: added after it was written {hint}")
    if not all(f.ok for f in files.values()):
        return "not written (fix the files above first)"
    if lock and not update:
        return "matched"
    entries = {}
    for rel, fc in files.items():
        e: dict = {"sha256": fc.sha256, "size": fc.size, "role": fc.role}
        prev = old.get(rel, {})
        src = sources.get(rel) or (prev.get("source") if prev.get("sha256") == fc.sha256 else None)
        if src:
            e["source"] = src
        entries[rel] = e
    write_lock(root, entries, written_by)
    return "updated" if lock else "written"
