"""Value types shared by the config layer: durations, byte sizes and secrets."""

from __future__ import annotations

import re

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
# Longer durations overflow datetime arithmetic and thread timeouts; no setting needs them.
MAX_DURATION = 10 * 365 * 86400.0


def parse_duration(text: str, limit: float | None = MAX_DURATION) -> float:
    """Parse a duration such as ``500ms``, ``30s``, ``1m30s`` or ``7d`` into seconds.

    Raises ValueError for anything else, including a bare number, because a
    unit-less "30" is ambiguous between seconds and minutes, and for anything
    longer than `limit` (ten years unless the caller checks its own maximum).
    """
    if not isinstance(text, str):
        raise ValueError(text)
    cleaned = text.strip()
    position = 0
    total = 0.0
    for match in _DURATION_PART.finditer(cleaned):
        if match.start() != position:
            raise ValueError(text)
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(cleaned) or (limit is not None and total > limit):
        raise ValueError(text)
    return total


def format_duration(seconds: float) -> str:
    """Format seconds the way the config file writes them (``90`` -> ``1m30s``, ``1.5`` -> ``1.5s``)."""
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60 and seconds != int(seconds):
        return f"{round(seconds, 3):g}s"
    parts = []
    remaining = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", re.IGNORECASE)
# Decimal units as DuckDB and disk vendors count them, binary units as the kernel reports memory.
_UNIT_BYTES = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """Parse a size such as ``256MiB``, ``512MB`` or ``1GiB`` into bytes; raise ValueError for anything else."""
    match = _SIZE.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(text)
    return int(float(match.group(1)) * _UNIT_BYTES[match.group(2).lower()])


def format_size(size: int) -> str:
    """Format bytes with the largest binary unit that divides them (``268435456`` -> ``256MiB``)."""
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        if size and size % _UNIT_BYTES[unit.lower()] == 0:
            return f"{size // _UNIT_BYTES[unit.lower()]}{unit}"
    return f"{size}B"


class Secret:
    """A config value that came from the environment or a secret field.

    ``str()`` and ``repr()`` print ``<secret>`` so the value cannot leak into
    logs, events or API output by accident; ``reveal()`` returns it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return "<secret>"

    __repr__ = __str__

    def __eq__(self, other) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def reveal(value):
    """Return the plain value of a Secret, or the value itself."""
    return value.reveal() if isinstance(value, Secret) else value
