"""A bounded pool of daemon worker threads for collector runs.

concurrent.futures.ThreadPoolExecutor joins its threads at interpreter exit,
so one probe stuck in a long timeout would keep a stopped Oculus alive. These
workers are daemon threads: once the writer has flushed, the process exits
whatever a probe is still waiting for.
"""

from __future__ import annotations

import logging
import queue
import threading

log = logging.getLogger(__name__)

_STOP = object()


class WorkerPool:
    def __init__(self, workers: int, name: str = "oculus-collector"):
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True)
            for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, function, *args) -> None:
        if self._closed:
            raise RuntimeError("worker pool is shut down")
        self._tasks.put((function, args))

    def shutdown(self) -> list:
        """Stop taking work; return the (function, args) tasks that never started."""
        self._closed = True
        pending = []
        while True:
            try:
                task = self._tasks.get_nowait()
            except queue.Empty:
                break
            if task is not _STOP:
                pending.append(task)
        for _ in self._threads:
            self._tasks.put(_STOP)
        return pending

    def _work(self) -> None:
        while True:
            task = self._tasks.get()
            if task is _STOP:
                return
            function, args = task
            try:
                function(*args)
            except Exception:  # a task must not end the worker; run_once already records failures
                log.exception("collector task failed")
