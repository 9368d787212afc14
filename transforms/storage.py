"""Files: one check of "is this a local file", opening local paths or fsspec URLs (retried with
backoff) as PyAV containers with readable errors, and crash-safe writes."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time

import av

from transforms.errors import CorruptVideo, EmptyFile, NotAVideo, UnreadableInput


def local_path(source: str) -> str | None:
    """The file system path of a local source (plain or ``file://``); None for a URL."""
    if source.startswith("file://"):
        return source[len("file://"):]
    return None if "://" in source else source


REMOTE_BACKOFF_S = 1.0  # first wait between attempts; doubles each time


def open_remote(source: str, attempts: int = 3, timeout_s: float | None = 60.0):
    """Open an fsspec URL for reading, retrying transient failures with exponential backoff.
    A missing file fails at once; anything else gets ``attempts`` tries."""
    import fsspec

    options = {}
    if source.startswith(("http://", "https://")) and timeout_s:
        try:
            import aiohttp  # fsspec's HTTP backend is built on it

            options["client_kwargs"] = {"timeout": aiohttp.ClientTimeout(total=timeout_s)}
        except ImportError:
            pass
    last = None
    for attempt in range(max(1, attempts)):
        try:
            return fsspec.open(source, "rb", **options).open()
        except FileNotFoundError:
            raise UnreadableInput(f"cannot open {source}: no such file") from None
        except Exception as exc:  # network and auth errors come in many types
            last = exc
            if attempt + 1 < attempts:
                time.sleep(REMOTE_BACKOFF_S * 2**attempt)
    raise UnreadableInput(f"cannot open {source} after {attempts} attempt(s): {last}")


@contextlib.contextmanager
def opened(source: str, attempts: int = 3, timeout_s: float | None = 60.0):
    """Context manager: the PyAV container of ``source`` (local path or fsspec URL).

    Opening failures are mapped to :class:`VideoError` subclasses with readable messages."""
    path = local_path(source)
    if path is not None:
        if os.path.isdir(path):
            raise NotAVideo(f"{source} is a directory, not a video file")
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            raise UnreadableInput(f"cannot read {source}: {exc.strerror or exc}") from None
        if size == 0:
            raise EmptyFile(f"{source} is empty (0 bytes)")
        if not os.access(path, os.R_OK):
            raise UnreadableInput(f"cannot read {source}: permission denied")
        target, fh = path, None
    else:
        fh = open_remote(source, attempts, timeout_s)
        target = fh
    try:
        container = av.open(target, mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError:
        _close(fh)
        raise NotAVideo(f"{source} is not a video FFmpeg can read (unknown or invalid data)") from None
    except av.error.FFmpegError as exc:
        _close(fh)
        raise CorruptVideo(f"{source} could not be opened: {exc}") from None
    except OSError as exc:
        _close(fh)
        raise UnreadableInput(f"cannot read {source}: {exc}") from None
    try:
        yield container
    finally:
        try:
            container.close()
        finally:
            _close(fh)


def _close(fh) -> None:
    if fh is not None:
        try:
            fh.close()
        except Exception:  # noqa: BLE001 - closing a broken handle must not mask the real error
            pass


def size_of(source: str) -> int:
    path = local_path(source)
    if path is not None:
        try:
            return os.path.getsize(path)
        except OSError:
            return 0
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(source)
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
