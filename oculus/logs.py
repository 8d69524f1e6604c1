"""Logging set-up: text or JSON lines on stderr, plus rate limiting for repeated errors."""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from datetime import datetime, timezone


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plus exception text if any."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Configure the root logger; safe to call again on reload."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # waitress logs every queue warning at WARNING; keep its chatter out of INFO output.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


class RateLimitedLog:
    """Log a repeated message at most once per `interval` per key, reporting how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval: float = 60.0):
        self.logger = logger
        self.interval = interval
        self._lock = threading.Lock()
        self._last: dict = {}
        self._suppressed: dict = {}

    def log(self, level: int, key, msg: str, *args) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            suppressed = self._suppressed.pop(key, 0)
            self._last[key] = now
        if suppressed:
            msg += " (%d similar messages suppressed)"
            args = args + (suppressed,)
        self.logger.log(level, msg, *args)

    def warning(self, key, msg: str, *args) -> None:
        self.log(logging.WARNING, key, msg, *args)

    def error(self, key, msg: str, *args) -> None:
        self.log(logging.ERROR, key, msg, *args)
