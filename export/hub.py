"""The Hugging Face Hub side of ``tts-export download``: commits, file metadata, resumable transfers.

Everything goes through the ``huggingface_hub`` client (HfApi.model_info, get_hf_file_metadata,
its HTTP session, headers and errors), so ``HF_ENDPOINT`` (a mirror such as https://hf-mirror.com),
``HF_HUB_OFFLINE``, ``HF_TOKEN`` / a stored login, ``HF_HUB_DOWNLOAD_TIMEOUT`` and
``HF_HUB_DISABLE_PROGRESS_BARS`` behave as they do for any hub download.

The byte transfer itself is ours, on the client's session: ``hf_hub_download`` (2.4) writes to a
per-process temporary file that it deletes on any failure and buffers 10 MB between writes, so an
interrupted multi-GB download would restart from zero. Here every received byte goes to
``<file>.<etag>.part`` at once; a dropped connection resumes with ``Range`` in the same run, and a
killed run resumes from the part file in the next. The finished file must hash to the hub's
ETag (sha256 for LFS files, the git blob sha1 for small ones) before it gets its real name.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

MAX_ATTEMPTS_WITHOUT_PROGRESS = 5
MAX_ATTEMPTS = 200  # a hard bound, even for a link that drops every few bytes
HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEX40 = re.compile(r"^[0-9a-f]{40}$")


class HubError(RuntimeError):
    """A hub request failed; the message names the repository and file."""


@dataclass(frozen=True)
class RemoteFile:
    repo: str
    path: str
    commit: str
    etag: str  # sha256 (LFS) or git blob sha1
    size: int
    url: str

    @property
    def name(self) -> str:
        return f"{self.repo}/{self.path}"


def digests(path: Path) -> tuple[str, str]:
    """(sha256, git blob sha1) of a file, in one pass."""
    sha, git = hashlib.sha256(), hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            sha.update(block)
            git.update(block)
    return sha.hexdigest(), git.hexdigest()


def etag_matches(etag: str, sha256: str, git_sha1: str) -> bool | None:
    """Does a file with these digests have this ETag? None when the ETag is neither kind of hash."""
    if HEX64.match(etag):
        return etag == sha256
    if HEX40.match(etag):
        return etag == git_sha1
    return None


def _transport_errors() -> tuple[type[BaseException], ...]:
    import httpx2  # huggingface_hub's HTTP library (2.x)

    return (httpx2.TransportError,)


class Hub:
    def __init__(self, endpoint: str | None = None, token: str | None = None, progress: bool = True):
        from huggingface_hub import constants

        self.endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
        self.token = token
        self.progress = progress
        self.offline = constants.is_offline_mode()
        self._commits: dict[tuple[str, str], str] = {}

    @contextlib.contextmanager
    def _errors(self, repo: str, what: str) -> Iterator[None]:
        """Turn the client's exceptions into one line naming the repository, file and remedy."""
        from huggingface_hub import errors as E

        try:
            yield
        except E.GatedRepoError:
            raise HubError(f"{repo} is gated: accept its conditions at {self.endpoint}/{repo}, then pass --token "
                           "or set HF_TOKEN") from None
        except E.RepositoryNotFoundError:
            raise HubError(f"{repo}: repository not found at {self.endpoint} (a private one needs --token or "
                           "HF_TOKEN)") from None
        except E.RevisionNotFoundError:
            raise HubError(f"{repo}: {what} not found (no such revision)") from None
        except E.RemoteEntryNotFoundError:
            raise HubError(f"{repo}: {what} not found in the repository") from None
        except E.HfHubHTTPError as e:
            status = e.response.status_code if e.response is not None else "?"
            raise HubError(f"{repo}: {what}: HTTP {status} from {self.endpoint}") from None
        except _transport_errors() as e:
            raise HubError(f"cannot reach {self.endpoint} for {repo} ({type(e).__name__}: {e}); set HF_ENDPOINT "
                           "to a mirror (e.g. https://hf-mirror.com), or HF_HUB_OFFLINE=1 to use local files only"
                           ) from None

    def commit(self, repo: str, revision: str) -> str:
        """The commit a revision (branch, tag or commit) of ``repo`` points at."""
        from huggingface_hub import HfApi

        key = (repo, revision)
        if key not in self._commits:
            with self._errors(repo, f"revision {revision!r}"):
                info = HfApi(endpoint=self.endpoint, token=self.token).model_info(repo, revision=revision)
            if not info.sha:
                raise HubError(f"{repo}: {self.endpoint} sent no commit for revision {revision!r}")
            self._commits[key] = info.sha
        return self._commits[key]

    def stat(self, repo: str, path: str, revision: str) -> RemoteFile:
        """Size, ETag and download URL of one file at the commit ``revision`` resolves to."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        commit = self.commit(repo, revision)
        url = hf_hub_url(repo, path, revision=commit, endpoint=self.endpoint)
        with self._errors(repo, path):
            meta = get_hf_file_metadata(url, token=self.token, endpoint=self.endpoint)
        if meta.etag is None or meta.size is None:
            raise HubError(f"{repo}/{path}: {self.endpoint} sent no ETag or size; is HF_ENDPOINT a Hub-compatible "
                           "server?")
        return RemoteFile(repo, path, meta.commit_hash or commit, meta.etag, int(meta.size), meta.location or url)

    def fetch(self, rf: RemoteFile, dest: Path) -> tuple[str, int]:
        """Download ``rf`` to ``dest`` (resuming a part file); returns (sha256, the byte it resumed at)."""
        from huggingface_hub.utils import build_hf_headers, tqdm

        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f"{dest.name}.{rf.etag[:16]}.part")
        for old in dest.parent.glob(f"{glob.escape(dest.name)}.*.part"):
            if old != part:  # a part of another version of the file
                old.unlink()
        have = part.stat().st_size if part.is_file() else 0
        if have > rf.size:
            part.unlink()
            have = 0
        resumed_at = have
        headers = build_hf_headers(token=self.token, headers={"Accept-Encoding": "identity"})
        if urlsplit(rf.url).netloc != urlsplit(self.endpoint).netloc:
            headers.pop("authorization", None)  # a CDN's signed URL: the token stays with the hub
        bar = tqdm(total=rf.size, initial=have, unit="B", unit_scale=True, desc=rf.path[-40:],
                   disable=not self.progress or None, name="huggingface_hub.http_get")
        try:
            self._transfer(rf, part, have, headers, bar)
        finally:
            bar.close()
        sha, git = digests(part)
        if etag_matches(rf.etag, sha, git) is False:
            part.unlink()
            raise HubError(f"{rf.name}: the downloaded file does not match the hub's ETag (sha256 {sha[:12]}…, ETag "
                           f"{rf.etag[:12]}…): corrupted in transit or on the server; removed it, run again")
        os.replace(part, dest)
        return sha, resumed_at

    def _transfer(self, rf: RemoteFile, part: Path, have: int, headers: dict, bar) -> None:
        from huggingface_hub import constants
        from huggingface_hub.utils import get_session, hf_raise_for_status

        idle = attempts = 0
        while have < rf.size:
            attempts += 1
            before, lost = have, None
            h = dict(headers, **({"Range": f"bytes={have}-"} if have else {}))
            try:
                with get_session().stream("GET", rf.url, headers=h, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT) as r:
                    with self._errors(rf.repo, rf.path):
                        hf_raise_for_status(r)
                    if have and r.status_code != 206:  # the server ignored Range: start over
                        part.write_bytes(b"")
                        bar.reset(total=rf.size)
                        have = before = 0
                    with part.open("ab") as fh:
                        for chunk in r.iter_bytes():  # no chunk size: every byte is written as it arrives
                            fh.write(chunk)
                            have += len(chunk)
                            bar.update(len(chunk))
            except _transport_errors() as e:
                lost = f"{type(e).__name__}: {e}"
            if have > rf.size:
                part.unlink()
                raise HubError(f"{rf.name}: the server sent {have} bytes, the hub says {rf.size}; removed the file, "
                               "run again")
            if have == rf.size:
                return
            idle = 0 if have > before else idle + 1
            if idle >= MAX_ATTEMPTS_WITHOUT_PROGRESS or attempts >= MAX_ATTEMPTS:
                raise HubError(f"{rf.name}: connection lost at {have} of {rf.size} bytes after {attempts} attempts "
                               f"({lost or 'short body'}); the bytes so far are kept: run the command again to resume")
            log.warning("%s: connection lost at %d of %d bytes (%s); resuming", rf.name, have, rf.size,
                        lost or "short body")
            time.sleep(min(0.25 * 2**idle, 8.0))


def cache_candidates(repo: str, path: str, commit: str | None, caches: list[Path]) -> Iterator[tuple[Path, str | None]]:
    """Copies of ``repo``'s ``path`` in Hugging Face cache layouts (``models--<owner>--<name>/snapshots/<commit>/``),
    as upstream's ensure_models_available migrates them: the known commit first, then refs/main,
    then the only snapshot. Yields (file, the ETag its blob is named by, if it is one)."""
    seen: set[Path] = set()
    for cache in caches:
        base = cache / f"models--{repo.replace('/', '--')}"
        snaps = base / "snapshots"
        if not snaps.is_dir():
            continue
        order = [snaps / commit] if commit else []
        ref = base / "refs" / "main"
        if ref.is_file():
            order.append(snaps / ref.read_text().strip())
        subs = [p for p in snaps.iterdir() if p.is_dir()]
        if len(subs) == 1:
            order.append(subs[0])
        for snap in order:
            f = snap / path
            if f.is_file() and f.resolve() not in seen:
                seen.add(f.resolve())
                blob = f.resolve().name  # snapshots/<commit>/<path> -> ../../blobs/<etag>
                yield f, (blob if HEX64.match(blob) or HEX40.match(blob) else None)
