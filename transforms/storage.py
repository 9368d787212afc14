"""Files: the one storage layer. Local paths (plain or ``file://``) use the OS directly; anything
else goes through fsspec (``s3://``, ``gs://``, ``az://``, ``hdfs://``, ...), with credentials and
endpoints found the standard way (``AWS_*`` variables including ``AWS_ENDPOINT_URL``, Beam's
``--s3_*`` options: :mod:`transforms.s3config`; Google application default credentials). Opening sources as PyAV containers: :mod:`transforms.containers`.

Writes are write-once: a final name appears whole or not at all. Locally that is a temp file
beside it, fsynced and renamed; object stores have no rename, so a file is built in a local temp
directory and uploaded under its final name in one request (an object is visible only when its
upload completes). Nothing here relies on renaming remote objects."""

from __future__ import annotations

import contextlib
import os
import tempfile

from transforms.s3config import check_endpoint, fs_options  # noqa: F401  (check_endpoint: re-exported)


def local_path(source: str) -> str | None:
    """The file system path of a local source (plain or ``file://``); None for a URL."""
    if source.startswith("file://"):
        return source[len("file://"):]
    return None if "://" in source else source


def is_local(url: str) -> bool:
    return local_path(url) is not None


def absolute(url: str) -> str:
    """An absolute local path, or the URL as given (without a trailing slash)."""
    path = local_path(url)
    return os.path.abspath(path) if path is not None else url.rstrip("/")


def _fs(url: str):
    """(fsspec filesystem, path) of a URL; a missing backend says what to install."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url, **fs_options(url))
    except ImportError as exc:
        scheme = url.split("://", 1)[0]
        extra = {"s3": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs"}.get(scheme, "its fsspec backend")
        raise ImportError(f"{url}: install {extra} to read and write {scheme}:// URLs "
                          f"(pip install {extra}): {exc}") from None
    fs.invalidate_cache(path)  # other processes write here: never answer from a stale listing
    return fs, path


def exists(url: str) -> bool:
    path = local_path(url)
    if path is not None:
        return os.path.exists(path)
    fs, p = _fs(url)
    return fs.exists(p)


def isfile(url: str) -> bool:
    path = local_path(url)
    if path is not None:
        return os.path.isfile(path)
    fs, p = _fs(url)
    return fs.isfile(p)


def isdir(url: str) -> bool:
    """A directory, or on an object store a prefix holding at least one object."""
    path = local_path(url)
    if path is not None:
        return os.path.isdir(path)
    fs, p = _fs(url)
    return fs.isdir(p)


def listdir(url: str) -> list[str]:
    """Names directly under ``url`` (empty when it does not exist)."""
    path = local_path(url)
    if path is not None:
        return os.listdir(path) if os.path.isdir(path) else []
    fs, p = _fs(url)
    try:
        return sorted({e.rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(p, detail=False)} - {""})
    except FileNotFoundError:
        return []


def glob(pattern: str) -> list[str]:
    """Sorted matches of a glob, local or remote (URLs keep their scheme)."""
    import glob as globlib

    path = local_path(pattern)
    if path is not None:
        return sorted(globlib.glob(path))
    fs, p = _fs(pattern)
    scheme = pattern.split("://", 1)[0]
    return sorted(f"{scheme}://{m}" for m in fs.glob(p))


def read_bytes(url: str) -> bytes:
    path = local_path(url)
    if path is not None:
        with open(path, "rb") as fh:
            return fh.read()
    fs, p = _fs(url)
    return fs.cat_file(p)


def open_read(url: str):
    """A binary file object for reading (local or remote)."""
    path = local_path(url)
    if path is not None:
        return open(path, "rb")
    fs, p = _fs(url)
    return fs.open(p, "rb")


def put_bytes(url: str, data: bytes) -> None:
    """``data`` under ``url``, whole or not at all."""
    path = local_path(url)
    if path is not None:
        atomic_write_bytes(path, data)
        return
    fs, p = _fs(url)
    fs.pipe_file(p, data)


def put_file(tmp: str, url: str) -> None:
    """Move the finished local file ``tmp`` to ``url``: fsynced and renamed locally (``tmp``
    must then be on the same file system, e.g. from :func:`temp_beside`), uploaded under its
    final name on an object store (then ``tmp`` is removed)."""
    path = local_path(url)
    if path is not None:
        fsync_file(tmp)
        os.replace(tmp, path)
        return
    fs, p = _fs(url)
    try:
        fs.put_file(tmp, p)
    finally:
        os.remove(tmp)


def temp_beside(url: str, suffix: str = "", prefix: str = ".tmp-") -> str:
    """A new empty local temp file from which :func:`put_file` can publish ``url``: in the same
    directory for a local path (so the rename is atomic), in the system temp directory for a URL."""
    path = local_path(url)
    directory = None
    if path is not None:
        directory = os.path.dirname(path) or "."
        os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    os.close(fd)
    return tmp


def makedirs(url: str) -> None:
    """Create a local directory; object stores need none."""
    path = local_path(url)
    if path is not None:
        os.makedirs(path, exist_ok=True)


def remove(url: str) -> None:
    path = local_path(url)
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
        return
    fs, p = _fs(url)
    with contextlib.suppress(FileNotFoundError):
        fs.rm_file(p)


def rmtree(url: str) -> None:
    """Remove a directory (or every object under a prefix); nothing there is fine."""
    path = local_path(url)
    if path is not None:
        import shutil

        shutil.rmtree(path, ignore_errors=True)
        return
    fs, p = _fs(url)
    with contextlib.suppress(FileNotFoundError):
        if fs.exists(p):
            fs.rm(p, recursive=True)


def pyarrow_fs(url: str):
    """(pyarrow filesystem or None, path) for pyarrow readers and writers."""
    path = local_path(url)
    if path is not None:
        return None, path
    import pyarrow.fs as pafs

    fs, p = _fs(url)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), p


def size_of(source: str) -> int:
    path = local_path(source)
    if path is not None:
        try:
            return os.path.getsize(path)
        except OSError:
            return 0
    try:
        fs, path = _fs(source)
        return int(fs.size(path) or 0)
    except Exception:  # noqa: BLE001 - size is informational for remote inputs
        return 0




def atomic_write_bytes(path: str, data: bytes) -> None:
    """``data`` at ``path`` whole or not at all: a temp file beside it, fsynced, renamed."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def fsync_file(path: str) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
