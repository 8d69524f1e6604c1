"""Short, user-facing phrases for network failures, shared by the network collectors."""

from __future__ import annotations

import errno
import socket

from oculus.config.values import format_duration


def describe_os_error(exc: BaseException, host: str, timeout: float) -> str:
    """Turn a socket-level exception into a phrase such as 'connection refused'."""
    if isinstance(exc, socket.gaierror):
        return f"DNS lookup failed for {host}: {exc.strerror or exc}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return f"timed out after {format_duration(timeout)}"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return f"no route to {host}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return f"{type(exc).__name__}: {exc}"
