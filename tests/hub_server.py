"""A stand-in for the Hugging Face Hub's file-serving API, on 127.0.0.1 only, for tests and a manual run.

It serves repositories laid out as ``ROOT/<owner>/<name>/<files>`` with exactly what the
``huggingface_hub`` client (2.4, read from its source) calls to download files:

  GET  /api/models/<repo>[/revision/<rev>]      HfApi.model_info: id, sha (the commit), siblings
  GET  /api/models/<repo>/tree/<rev>[/<dir>]     HfApi.list_repo_tree (snapshot_download's listing)
  POST /api/models/<repo>/paths-info/<rev>       HfApi.get_paths_info
  HEAD /<repo>/resolve/<rev>/<path>              get_hf_file_metadata: ETag, X-Repo-Commit, Content-Length
  GET  /<repo>/resolve/<rev>/<path>              the bytes; ``Range: bytes=N-`` answers 206 + Content-Range

As on the Hub, an LFS file's ETag is the sha256 of its content (also sent as X-Linked-Etag /
X-Linked-Size) and a plain git file's ETag is its git blob sha1; errors carry X-Error-Code
(RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo). The real Hub redirects LFS downloads
to a CDN on another host; the files are served in place here, as a mirror does.

Faults, for tests (PATH is ``<owner>/<name>/<path in repo>``):
  --cut PATH:N      the first GET of PATH sends N bytes of the body, then drops the connection
  --stall PATH:N    the first GET of PATH sends N bytes, then stalls (at most --stall-seconds)
  --corrupt PATH    every GET of PATH serves one flipped byte (the advertised ETag stays right)
  --gated REPO=TOKEN  REPO answers 401 GatedRepo unless ``Authorization: Bearer TOKEN``

Every request is appended to --log as one JSON line. The server stops by itself after
--max-requests requests or --max-seconds seconds. Stdlib only, so it runs anywhere:

  python tests/hub_server.py --from-checkpoints checkpoints/tiny --root /tmp/hub --port 8765
  HF_ENDPOINT=http://127.0.0.1:8765 tts-export download --out /tmp/ckpt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HOST = "127.0.0.1"
LFS_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".model", ".ckpt", ".onnx")
BLOCK = 64 * 1024

# Where upstream takes each released file from (indextts/utils/model_download.py,
# ensure_models_available, and the model repository itself): (repo, path in repo) -> path in the
# checkpoint directory. Written out here on purpose, independently of export/download.py, so
# that a wrong table there fails the tests. The decoys are files the repositories also hold that a
# download must not fetch (the real ones are GBs: conformer_shaw.pt, the Qwen emotion LM, ...).
RELEASE = {
    ("IndexTeam/IndexTTS-2", "config.yaml"): "config.yaml",
    ("IndexTeam/IndexTTS-2", "bpe.model"): "bpe.model",
    ("IndexTeam/IndexTTS-2", "gpt.pth"): "gpt.pth",
    ("IndexTeam/IndexTTS-2", "s2mel.pth"): "s2mel.pth",
    ("IndexTeam/IndexTTS-2", "wav2vec2bert_stats.pt"): "wav2vec2bert_stats.pt",
    ("IndexTeam/IndexTTS-2", "feat1.pt"): "feat1.pt",
    ("IndexTeam/IndexTTS-2", "feat2.pt"): "feat2.pt",
    ("facebook/w2v-bert-2.0", "config.json"): "hf_cache/w2v-bert-2.0/config.json",
    ("facebook/w2v-bert-2.0", "preprocessor_config.json"): "hf_cache/w2v-bert-2.0/preprocessor_config.json",
    ("facebook/w2v-bert-2.0", "model.safetensors"): "hf_cache/w2v-bert-2.0/model.safetensors",
    ("amphion/MaskGCT", "semantic_codec/model.safetensors"): "hf_cache/semantic_codec_model.safetensors",
    ("funasr/campplus", "campplus_cn_common.bin"): "hf_cache/campplus_cn_common.bin",
    ("nvidia/bigvgan_v2_22khz_80band_256x", "config.json"): "hf_cache/bigvgan/config.json",
    ("nvidia/bigvgan_v2_22khz_80band_256x", "bigvgan_generator.pt"): "hf_cache/bigvgan/bigvgan_generator.pt",
}
DECOYS = {
    "IndexTeam/IndexTTS-2": ["README.md", "qwen0.6bemo4-merge/config.json", "qwen0.6bemo4-merge/model.safetensors"],
    "facebook/w2v-bert-2.0": ["README.md", "conformer_shaw.pt"],
    "amphion/MaskGCT": ["acoustic_codec/model.safetensors", "t2s_model/model.safetensors"],
    "funasr/campplus": ["configuration.json"],
    "nvidia/bigvgan_v2_22khz_80band_256x": ["bigvgan_discriminator_optimizer.pt", "README.md"],
}


def make_hub(checkpoints: str | Path, root: str | Path) -> Path:
    """Lay out the five repositories under ``root`` from a checkpoint directory in the released layout."""
    checkpoints, root = Path(checkpoints), Path(root)
    for (repo, path), rel in RELEASE.items():
        dst = root / repo / path
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(checkpoints / rel, dst)
    for repo, paths in DECOYS.items():
        for path in paths:
            (root / repo / path).parent.mkdir(parents=True, exist_ok=True)
            (root / repo / path).write_bytes(f"decoy {repo}/{path}\n".encode() * 64)
    return root


class Repo:
    """One repository: every file's size, sha256 / git blob sha1 and the commit they make up."""

    def __init__(self, repo_id: str, folder: Path):
        self.id, self.folder = repo_id, folder
        self.files: dict[str, dict] = {}
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                data = p.read_bytes()
                rel = p.relative_to(folder).as_posix()
                self.files[rel] = {
                    "size": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "git_sha1": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest(),
                    "lfs": rel.endswith(LFS_SUFFIXES) or len(data) >= 10 * 2**20,
                }
        listing = "".join(f"{k}\0{v['sha256']}\n" for k, v in self.files.items())
        self.commit = hashlib.sha1(f"{repo_id}\n{listing}".encode()).hexdigest()

    def etag(self, path: str) -> str:
        f = self.files[path]
        return f["sha256"] if f["lfs"] else f["git_sha1"]

    def entry(self, path: str) -> dict:
        if path not in self.files:  # a folder
            return {"type": "directory", "oid": hashlib.sha1(path.encode()).hexdigest(), "size": 0, "path": path}
        f = self.files[path]
        e = {"type": "file", "oid": f["git_sha1"], "size": f["size"], "path": path}
        if f["lfs"]:
            e["lfs"] = {"oid": f["sha256"], "size": f["size"], "pointerSize": 134}
        return e

    def folders(self) -> list[str]:
        return sorted({"/".join(p.split("/")[:i]) for p in self.files for i in range(1, p.count("/") + 1)})


class Hub(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root: Path, port: int, args: argparse.Namespace):
        super().__init__((HOST, port), Handler)
        self.repos = {f"{o.name}/{r.name}": Repo(f"{o.name}/{r.name}", r)
                      for o in sorted(root.iterdir()) if o.is_dir() for r in sorted(o.iterdir()) if r.is_dir()}
        self.cut = dict(_split_fault(s) for s in args.cut)
        self.stall = dict(_split_fault(s) for s in args.stall)
        self.corrupt = set(args.corrupt)
        self.gated = dict(g.split("=", 1) for g in args.gated)
        self.stall_seconds = args.stall_seconds
        self.max_requests = args.max_requests
        self.log_path = Path(args.log) if args.log else None
        self.lock = threading.Lock()
        self.requests = 0
        self.faulted: set[str] = set()
        self.stopping = threading.Event()

    def record(self, entry: dict) -> None:
        with self.lock:
            if self.log_path is not None:
                with self.log_path.open("a") as f:
                    f.write(json.dumps(entry) + "\n")

    def first_fault(self, key: str) -> bool:
        """True once per file: the first transfer is the one that fails."""
        with self.lock:
            if key in self.faulted:
                return False
            self.faulted.add(key)
            return True


def _split_fault(spec: str) -> tuple[str, int]:
    path, _, n = spec.rpartition(":")
    return path, int(n)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the Hub; every answer carries Content-Length
    server: Hub

    def log_message(self, fmt, *args):  # the JSON log replaces stderr chatter
        pass

    # ------------------------------------------------------------------ dispatch
    def do_HEAD(self):
        self._route(body=False)

    def do_GET(self):
        self._route(body=True)

    def do_POST(self):
        self._route(body=True)

    def _route(self, body: bool) -> None:
        hub = self.server
        with hub.lock:
            hub.requests += 1
            over = hub.requests > hub.max_requests
        if over:
            hub.stopping.set()
            return self._error(503, "ServiceUnavailable", "request budget of the stand-in hub spent")
        self._sent, self._logged = 0, False
        url = urllib.parse.urlsplit(self.path)
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/")]
        status = 404
        try:
            if parts[:2] == ["api", "models"] and len(parts) >= 4:
                status = self._api(parts[2] + "/" + parts[3], parts[4:], url.query)
            elif len(parts) >= 5 and parts[2] == "resolve":
                status = self._resolve(parts[0] + "/" + parts[1], parts[3], "/".join(parts[4:]), body)
            else:
                status = self._error(404, "EntryNotFound", f"no route {url.path}")
        finally:
            self._record(status)

    def _record(self, status: int, **extra) -> None:
        if not self._logged:  # once per request: when it ends, or when it starts to stall
            self._logged = True
            self.server.record({"method": self.command, "path": urllib.parse.urlsplit(self.path).path,
                                "range": self.headers.get("Range"), "auth": bool(self.headers.get("Authorization")),
                                "status": status, "sent": self._sent, **extra})

    # ------------------------------------------------------------------ helpers
    def _repo(self, repo_id: str, rev: str | None) -> tuple[Repo | None, int | None]:
        hub = self.server
        repo = hub.repos.get(repo_id)
        if repo is None:
            return None, self._error(401, "RepoNotFound", f"Repository Not Found for {repo_id}")
        token = hub.gated.get(repo_id)
        if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
            return None, self._error(401, "GatedRepo", f"Access to model {repo_id} is restricted.")
        if rev is not None and rev not in ("main", repo.commit):
            return None, self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        return repo, None

    def _error(self, status: int, code: str, message: str) -> int:
        data = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        return status

    def _json(self, obj, repo: Repo) -> int:
        data = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Repo-Commit", repo.commit)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        return 200

    # ------------------------------------------------------------------ API
    def _api(self, repo_id: str, rest: list[str], query: str) -> int:
        if not rest or rest[0] == "revision":
            repo, err = self._repo(repo_id, rest[1] if len(rest) > 1 else "main")
            if repo is None:
                return err
            return self._json({"id": repo_id, "modelId": repo_id, "sha": repo.commit, "private": False,
                               "gated": "manual" if repo_id in self.server.gated else False, "disabled": False,
                               "siblings": [{"rfilename": p} for p in repo.files], "tags": []}, repo)
        if rest[0] == "tree" and len(rest) >= 2:
            repo, err = self._repo(repo_id, rest[1])
            if repo is None:
                return err
            under = "/".join(rest[2:])
            recursive = "recursive=true" in query.lower() or "recursive=1" in query
            names = list(repo.files) + repo.folders()
            prefix = under + "/" if under else ""
            picked = [p for p in sorted(names) if p.startswith(prefix) and (recursive or "/" not in p[len(prefix):])]
            return self._json([repo.entry(p) for p in picked], repo)
        if rest[0] == "paths-info" and len(rest) >= 2:
            repo, err = self._repo(repo_id, rest[1])
            if repo is None:
                return err
            n = int(self.headers.get("Content-Length") or 0)
            form = urllib.parse.parse_qs(self.rfile.read(n).decode()) if n else {}
            wanted = form.get("paths", [])
            return self._json([repo.entry(p) for p in wanted if p in repo.files or p in repo.folders()], repo)
        return self._error(404, "EntryNotFound", f"no API route {'/'.join(rest)}")

    # ------------------------------------------------------------------ files
    def _resolve(self, repo_id: str, rev: str, path: str, body: bool) -> int:
        repo, err = self._repo(repo_id, rev)
        if repo is None:
            return err
        if path not in repo.files:
            return self._error(404, "EntryNotFound", f"{path} does not exist at {rev}")
        f, key = repo.files[path], f"{repo_id}/{path}"
        size, start = f["size"], 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and body:
            first = rng[len("bytes="):].split("-", 1)[0]
            start = int(first) if first else 0
            if start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return 416
        status = 206 if start else 200
        self.send_response(status)
        self.send_header("ETag", f'"{repo.etag(path)}"')
        self.send_header("X-Repo-Commit", repo.commit)
        if f["lfs"]:
            self.send_header("X-Linked-Etag", f'"{f["sha256"]}"')
            self.send_header("X-Linked-Size", str(size))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        if not body:
            return status
        limit, stall = None, False
        if key in self.server.cut and self.server.first_fault("cut:" + key):
            limit = self.server.cut[key]
        elif key in self.server.stall and self.server.first_fault("stall:" + key):
            limit, stall = self.server.stall[key], True
        flip = size // 2 if key in self.server.corrupt else -1
        with (repo.folder / path).open("rb") as fh:
            fh.seek(start)
            pos = start
            while pos < size:
                block = fh.read(BLOCK if limit is None else min(BLOCK, start + limit - pos))
                if not block:
                    break
                if pos <= flip < pos + len(block):
                    b = bytearray(block)
                    b[flip - pos] ^= 0xFF
                    block = bytes(b)
                self.wfile.write(block)
                self._sent += len(block)
                pos += len(block)
                if limit is not None and pos - start >= limit:
                    self.wfile.flush()
                    if stall:  # hold the connection open without sending, until killed or timed out
                        self._record(status, stalled=True)
                        self.server.stopping.wait(self.server.stall_seconds)
                    self._drop()
                    return status
        return status

    def _drop(self) -> None:
        """Cut the connection mid-body, as a lost link does."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", required=True, help="folder of <owner>/<name>/ repositories")
    ap.add_argument("--from-checkpoints", help="first lay out the five repositories under --root from this "
                    "checkpoint directory (released layout)")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    ap.add_argument("--cut", action="append", default=[], metavar="PATH:N")
    ap.add_argument("--stall", action="append", default=[], metavar="PATH:N")
    ap.add_argument("--stall-seconds", type=float, default=30.0)
    ap.add_argument("--corrupt", action="append", default=[], metavar="PATH")
    ap.add_argument("--gated", action="append", default=[], metavar="REPO=TOKEN")
    ap.add_argument("--log", help="append one JSON line per request here")
    ap.add_argument("--max-requests", type=int, default=5000)
    ap.add_argument("--max-seconds", type=float, default=900.0)
    args = ap.parse_args(argv)
    root = Path(args.root)
    if args.from_checkpoints:
        make_hub(args.from_checkpoints, root)
    hub = Hub(root, args.port, args)
    print(f"http://{HOST}:{hub.server_address[1]}", flush=True)  # the first line tells the caller the port
    t = threading.Thread(target=hub.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    t.start()
    deadline = time.monotonic() + args.max_seconds
    try:
        while time.monotonic() < deadline and not hub.stopping.is_set():
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    hub.stopping.set()
    hub.shutdown()
    hub.server_close()
    sys.stdout.flush()
    os._exit(0)  # handler threads may still sit in a stall; nothing of theirs needs to finish


if __name__ == "__main__":
    main()
