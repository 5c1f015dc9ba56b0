"""Where dataset files live, and how missing ones are downloaded and checked.

Lookup order for the data root (first one that is set wins):

1. the explicit ``data_dir`` argument of a loader;
2. the environment variable ``ANALOGTRAIN_DATA_DIR`` (ignored when empty);
3. ``platformdirs.user_cache_dir("analogtrain")`` (e.g. ``~/.cache/analogtrain`` on Linux).

Each dataset has a subfolder of that root (``mnist``, ``mnist-backrand``, ``cifar10``,
``cifar100``); a file lying directly in the root is accepted too, so
``data_dir=/path/to/folder/with/the/files`` works whichever way the files were laid out.
Downloads go to the subfolder.

:func:`download` fetches one file from a list of mirrors with :mod:`urllib` (30 s timeout per
attempt), shows a :mod:`tqdm` progress bar, writes to a temporary file in the destination
folder, verifies its SHA-256 or MD5 and only then renames it into place, so an interrupted
download never leaves a half-written file under the real name.  Every failure a user can
cause or fix (offline, a corrupt file, a non-writable folder) is raised as a one-line
:class:`~analogtrain.errors.DataError` naming the file and the folder to put it in by hand.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import DataError

ENV_VAR = "ANALOGTRAIN_DATA_DIR"
"""Environment variable naming the data root (used when no ``data_dir`` is passed)."""

DOWNLOAD_TIMEOUT_S = 30.0
"""Socket timeout of one download attempt, in seconds."""

_CHUNK = 1 << 20  # bytes read per step while downloading or hashing

__all__ = [
    "ENV_VAR",
    "DOWNLOAD_TIMEOUT_S",
    "data_root",
    "dataset_dir",
    "candidate_paths",
    "find_file",
    "file_digest",
    "verify_checksum",
    "download",
    "fetch_file",
]


def data_root(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data root: ``data_dir`` if given, else ``$ANALOGTRAIN_DATA_DIR``, else the user cache.

    ``~`` is expanded.  The folder is not created here.
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    import platformdirs  # imported lazily: only needed for the default location

    return Path(platformdirs.user_cache_dir("analogtrain"))


def dataset_dir(subdir: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder a dataset is downloaded to: ``<data root>/<subdir>``."""
    return data_root(data_dir) / subdir


def candidate_paths(
    filename: str, subdir: str, data_dir: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Where ``filename`` is looked for, in order: ``<root>/<subdir>/<filename>``, ``<root>/<filename>``."""
    root = data_root(data_dir)
    return [root / subdir / filename, root / filename]


def find_file(
    filename: str, subdir: str, data_dir: str | os.PathLike[str] | None = None
) -> Path | None:
    """The first existing file among :func:`candidate_paths`, or ``None``."""
    for path in candidate_paths(filename, subdir, data_dir):
        if path.is_file():
            return path
    return None


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest (``"sha256"`` or ``"md5"``) of a file, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except OSError as exc:
        raise DataError(
            f"cannot read data file {path} ({exc.strerror or exc}); check its permissions or "
            "delete it and rerun to download again"
        ) from exc
    return h.hexdigest()


def _expected(sha256: str | None, md5: str | None) -> tuple[str, str]:
    if sha256:
        return "sha256", sha256.lower()
    if md5:
        return "md5", md5.lower()
    raise ValueError("a checksum (sha256 or md5) is required")


def verify_checksum(path: Path, *, sha256: str | None = None, md5: str | None = None) -> str:
    """Check ``path`` against its published checksum; return the hex digest.

    Raises :class:`DataError` naming the file, its folder and both digests on a mismatch.
    """
    algo, want = _expected(sha256, md5)
    got = file_digest(path, algo)
    if got != want:
        name = "SHA-256" if algo == "sha256" else "MD5"
        raise DataError(
            f"data file {path.name} in {path.parent} fails its {name} check (expected {want}, "
            f"got {got}); delete it and rerun to download again, or replace it with the "
            "original file"
        )
    return got


def _fetch_one(url: str, tmp: Path, *, progress: bool, desc: str, timeout: float) -> None:
    """Stream one URL into ``tmp`` with a progress bar; network errors propagate."""
    from tqdm.auto import tqdm

    req = urllib.request.Request(url, headers={"User-Agent": "analogtrain"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (http/https/file)
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with (
            open(tmp, "wb") as out,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=desc,
                disable=not progress,
                leave=False,
            ) as bar,
        ):
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


def _short_reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        return str(getattr(reason, "strerror", None) or reason)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def download(
    url_list: Sequence[str] | str,
    dest: str | os.PathLike[str],
    sha256: str | None = None,
    md5: str | None = None,
    progress: bool = True,
    *,
    timeout: float = DOWNLOAD_TIMEOUT_S,
) -> Path:
    """Download one file to ``dest``, trying each mirror URL in turn, and verify its checksum.

    ``url_list`` holds full URLs of the same file (``http(s)://`` or ``file://``).  The data is
    written to ``<dest>.part`` in the destination folder and renamed to ``dest`` only after
    the SHA-256 (preferred) or MD5 matches; a mirror that serves a wrong file is skipped.
    Returns ``dest``.  If every mirror fails, raises :class:`DataError` naming the file, the
    folder to put it in by hand, and why each mirror failed.
    """
    urls = [url_list] if isinstance(url_list, str) else list(url_list)
    algo, want = _expected(sha256, md5)
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create data folder {dest.parent} ({exc.strerror or exc}); pass data_dir= "
            f"or set {ENV_VAR} to a writable folder"
        ) from exc
    tmp = dest.with_name(f"{dest.name}.part{os.getpid()}")
    failures: list[str] = []
    for url in urls:
        try:
            _fetch_one(url, tmp, progress=progress, desc=dest.name, timeout=timeout)
        except (OSError, ValueError, http.client.HTTPException) as exc:  # URLError, timeouts: OSError
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.filename == str(tmp):
                raise DataError(
                    f"cannot write {tmp} ({exc.strerror or exc}); pass data_dir= or set "
                    f"{ENV_VAR} to a writable folder with free space"
                ) from exc
            failures.append(f"{url}: {_short_reason(exc)}")
            continue
        got = file_digest(tmp, algo)
        if got != want:
            tmp.unlink(missing_ok=True)
            failures.append(f"{url}: {algo} mismatch (got {got})")
            continue
        os.replace(tmp, dest)
        return dest
    raise DataError(
        f"could not download {dest.name} ({'; '.join(failures) or 'no mirror given'}); "
        f"check the network, or put the original file in {dest.parent} by hand and rerun"
    )


def fetch_file(
    filename: str,
    subdir: str,
    *,
    mirrors: Iterable[str],
    sha256: str | None = None,
    md5: str | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    download_missing: bool = True,
    verify: bool = True,
    progress: bool = True,
    what: str = "",
) -> Path:
    """Find ``filename`` locally (see :func:`find_file`) or download it; verify its checksum.

    ``mirrors`` are base URLs (ending in ``/``) that ``filename`` is appended to.  With
    ``download_missing=False`` a missing file raises :class:`DataError` naming the folder to
    put it in.  ``verify=False`` skips the checksum of a file found locally (downloads are
    always checked).  ``what`` names the dataset in messages.
    """
    label = f"{what} file" if what else "data file"
    found = find_file(filename, subdir, data_dir)
    if found is not None:
        if verify:
            verify_checksum(found, sha256=sha256, md5=md5)
        return found
    dest = dataset_dir(subdir, data_dir) / filename
    if not download_missing:
        raise DataError(
            f"{label} {filename} not found in {dest.parent} or {dest.parent.parent}; put the "
            "original file there, or leave out --no-download (Python: download=True) to download it"
        )
    urls = [m if m.endswith("/") else m + "/" for m in mirrors]
    try:
        return download([u + filename for u in urls], dest, sha256=sha256, md5=md5, progress=progress)
    except DataError as exc:
        # Re-raise with the dataset named; the message stays one line.
        raise DataError(f"{label} missing: {exc}") from exc
