"""What a run shows while it runs: a progress bar over the videos' completion records, and
Beam's worker chatter kept in the generation's ``logs/beam.log`` instead of the terminal."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time

from transforms import storage

log = logging.getLogger(__name__)


@contextlib.contextmanager
def worker_output_to(path: str):
    """Send file descriptor 2 (where Beam's worker processes print their chatter) to ``path``
    while the pipeline runs; our own log lines and the progress bar keep the real stderr.
    For a ``path`` on an object store the log is kept in a local temp file and uploaded at the end."""
    url = path
    if not storage.is_local(url):
        path = storage.temp_beside(url, suffix=".log")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    log_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    real = os.fdopen(os.dup(saved), "w", buffering=1)
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler)]
    old_streams = [h.setStream(real) for h in handlers]
    os.dup2(log_fd, 2)
    try:
        yield real
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        for h, stream in zip(handlers, old_streams):
            h.setStream(stream)
        real.close()
        os.close(saved)
        os.close(log_fd)
        if url != path:
            try:
                storage.put_file(path, url)
            except Exception as exc:  # noqa: BLE001 - a lost log must not fail a finished run
                log.warning("vidcurate: could not upload the worker log to %s: %s", url, exc)


class Progress:
    """Counts the completion records workers write and shows a progress bar (videos done/total,
    rate) on a terminal, or a log line every 10 s otherwise. Records on an object store are
    listed every 10 s (one list request per page of names), local ones every second."""

    def __init__(self, directory: str, video_ids: set[str]):
        self.directory, self.ids = directory, set(video_ids)
        self.interval = 1.0 if storage.is_local(directory) else 10.0
        self.total = len(self.ids)
        self.stream = sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def count(self) -> int:
        try:
            return sum(1 for f in storage.listdir(self.directory) if f.endswith(".json") and f[:-5] in self.ids)
        except Exception:  # noqa: BLE001 - a failed count only delays the bar
            return 0

    def _loop(self):
        from tqdm import tqdm

        bar = tqdm(total=self.total, initial=self.count(), unit="video", desc="analyzing", file=self.stream,
                   disable=not self.stream.isatty())
        start = last_log = time.time()
        first = logged = bar.n
        while not self._stop.wait(self.interval):
            done = self.count()
            bar.update(done - bar.n)
            if bar.disable and done != logged and time.time() - last_log >= 10:
                rate = (done - first) / (time.time() - start) * 60
                log.info("analyzed %d/%d videos (%.1f videos/min)", done, self.total, rate)
                logged, last_log = done, time.time()
        bar.update(self.count() - bar.n)
        bar.close()

    @contextlib.contextmanager
    def to(self, stream):
        self.stream = stream
        if self.total:
            self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            if self.total:
                self._thread.join(timeout=5)


