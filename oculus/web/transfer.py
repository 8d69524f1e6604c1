"""GET /api/export and POST /api/backup: history and whole-database copies for holders of the API token.

Both write a temporary file next to the database, the one directory Oculus may
write to under the systemd unit, then stream it to the client. The file is
unlinked as soon as it is open, so it disappears when the response ends, even
when the client goes away halfway.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import time

import bottle

from oculus.config import reveal
from oculus.storage import transfer, utc_now
from oculus.web.jsonapi import ApiError, parse_choice, parse_time
from oculus.web.query import check_token
from oculus.web.ratelimit import TokenBuckets, retry_after_header

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


class TransferLimits:
    """Limits of the export and backup routes; tests shrink them."""

    def __init__(self, *, rate: float = 1.0, burst: int = 5, max_concurrent: int = 2, snapshot_timeout: float = 30.0):
        # Each request copies up to the whole database, so a client gets a few in a row, then one a second.
        self.rate = rate
        self.burst = burst
        self.max_concurrent = max_concurrent
        self.snapshot_timeout = snapshot_timeout


class TransferEndpoints:
    def __init__(self, runtime, limits: TransferLimits | None = None):
        self.runtime = runtime
        self.limits = limits or TransferLimits()
        self.buckets = TokenBuckets(self.limits.rate, self.limits.burst)
        self._slots = threading.BoundedSemaphore(self.limits.max_concurrent)

    def install(self, app: bottle.Bottle) -> None:
        app.get("/api/export")(self.export)
        app.post("/api/backup")(self.backup)

    # -- routes ----------------------------------------------------------------------

    def export(self):
        self._authorize("export")
        query = bottle.request.query
        now = utc_now()
        selection = transfer.ExportSelection(
            since=parse_time("since", query.getunicode("since"), now),
            until=parse_time("until", query.getunicode("until"), now),
            symbols=_symbols(query),
            resolution=parse_choice("resolution", query.getunicode("resolution"), transfer.EXPORT_RESOLUTIONS, "raw"),
        )
        if selection.since and selection.until and selection.since >= selection.until:
            raise ApiError(400, "invalid_parameter", "since: must be earlier than until")
        file_format = parse_choice("format", query.getunicode("format"), transfer.EXPORT_FORMATS, "parquet")

        with self._slot(), tempfile.TemporaryDirectory(prefix=".oculus-export-", dir=self._directory()) as work:
            path = os.path.join(work, f"export.{file_format}")
            started = time.perf_counter()
            cursor = self.runtime.database.new_cursor()
            try:
                rows = transfer.export_to_file(cursor, selection, file_format, path)
            finally:
                cursor.close()
            body = _open_and_unlink(path)
        log.info("export sent rows=%d format=%s resolution=%s bytes=%d elapsed_ms=%.0f", rows, file_format,
                 selection.resolution, _size(body), (time.perf_counter() - started) * 1000)
        bottle.response.set_header("X-Oculus-Rows", str(rows))
        return _stream(body, transfer.MEDIA_TYPES[file_format], f"oculus-{selection.resolution}.{file_format}")

    def backup(self):
        self._authorize("backup")
        with self._slot(), tempfile.TemporaryDirectory(prefix=".oculus-backup-", dir=self._directory()) as work:
            path = os.path.join(work, "oculus.duckdb")
            started = time.perf_counter()
            try:
                cursor = transfer.snapshot_from_writer(self.runtime.writer, self.limits.snapshot_timeout)
            except TimeoutError as exc:
                raise ApiError(503, "busy", f"the writer did not take the backup request: {exc}; retry later",
                               {"Retry-After": "10"}) from None
            try:
                transfer.copy_snapshot(cursor, path)
            finally:
                cursor.close()
            body = _open_and_unlink(path)
        log.info("backup sent bytes=%d elapsed_ms=%.0f", _size(body), (time.perf_counter() - started) * 1000)
        stamp = utc_now().strftime("%Y%m%dT%H%M%SZ")
        return _stream(body, "application/octet-stream", f"oculus-{stamp}.duckdb")

    # -- checks ----------------------------------------------------------------------

    def _authorize(self, action: str) -> None:
        token = reveal(self.runtime.config.server.api_token)
        if not token:
            raise ApiError(403, f"{action}_disabled",
                           f"the {action} endpoint is disabled because no API token is configured; set "
                           "server.api_token in the config or the OCULUS_API_TOKEN environment variable, "
                           "then restart Oculus")
        client = bottle.request.environ.get("REMOTE_ADDR") or "unknown"
        wait = self.buckets.acquire(client)
        if wait:
            raise ApiError(429, "rate_limited",
                           f"too many export and backup requests from {client}; retry after the Retry-After delay",
                           {"Retry-After": retry_after_header(wait)})
        check_token(bottle.request.headers.get("Authorization", ""), token.encode("utf-8"))

    def _slot(self):
        if not self._slots.acquire(blocking=False):
            raise ApiError(503, "busy", f"{self.limits.max_concurrent} exports or backups are running already; "
                           "retry when one has finished", {"Retry-After": "10"})
        return _Released(self._slots)

    def _directory(self) -> str:
        return os.path.dirname(self.runtime.database.path)


class _Released:
    """Release a semaphore slot on leaving the with block."""

    def __init__(self, semaphore):
        self.semaphore = semaphore

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.semaphore.release()


def _symbols(query) -> tuple[str, ...]:
    """Return the symbol parameters: repeated (symbol=a&symbol=b) or comma-separated (symbol=a,b)."""
    values = query.decode().getall("symbol")
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def _open_and_unlink(path: str):
    handle = open(path, "rb")
    os.unlink(path)
    return handle


def _size(handle) -> int:
    return os.fstat(handle.fileno()).st_size


def _stream(handle, content_type: str, filename: str):
    bottle.response.content_type = content_type
    bottle.response.set_header("Content-Length", str(_size(handle)))
    bottle.response.set_header("Content-Disposition", f'attachment; filename="{filename}"')
    bottle.response.set_header("Cache-Control", "no-store")
    wrapper = bottle.request.environ.get("wsgi.file_wrapper")
    return wrapper(handle, CHUNK_BYTES) if wrapper else _chunks(handle)


def _chunks(handle):
    with handle:
        while chunk := handle.read(CHUNK_BYTES):
            yield chunk
