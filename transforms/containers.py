"""Sources as PyAV containers: local paths or fsspec URLs (retried with backoff), with
readable errors (:class:`transforms.errors.VideoError` subclasses)."""

from __future__ import annotations

import contextlib
import os
import time

import av

from transforms.errors import CorruptVideo, EmptyFile, NotAVideo, UnreadableInput
from transforms.storage import local_path

REMOTE_BACKOFF_S = 1.0  # first wait between attempts; doubles each time


def open_remote(source: str, attempts: int = 3, timeout_s: float | None = 60.0):
    """Open an fsspec URL for reading, retrying transient failures with exponential backoff.
    A missing file fails at once; anything else gets ``attempts`` tries."""
    import fsspec

    from transforms.s3config import fs_options

    options = fs_options(source)
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
