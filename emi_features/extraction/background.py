"""Writing parts on a thread, so that writing the cache overlaps inference."""

from __future__ import annotations

import queue
import threading

from emi_features.cache.schema import ClipFeatures
from emi_features.cache.writer import CacheWriter


class BackgroundWriter:
    """Runs `CacheWriter.write_part` on a thread so that writing overlaps inference (h5py and
    numpy release the GIL while torch computes). At most `depth` parts wait; parts commit in
    order; an error in the thread is raised at the next call or at `close`."""

    def __init__(self, writer: CacheWriter, depth: int = 2):
        self.writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="emi-cache-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self.writer.write_part(*item)
                except BaseException as error:  # handed to the main thread
                    self._error = error

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def write_part(self, clips: list[ClipFeatures], skipped: dict[str, str]) -> None:
        self._raise()
        self._queue.put((clips, skipped))

    def close(self) -> None:
        """Wait until every queued part is committed (also when the caller is failing)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        self._raise()
