"""Generic JSON API collector: one HTTP request per run, numbers picked out with JSON paths.

Each configured value becomes the symbol custom.<name>.<field>. Paths use a
small subset of JSONPath, compiled when the config is loaded:

    $                   the whole document
    .key                a member of an object (any characters except . [ ] ' ")
    ['key'] ["key"]     a member whose name contains dots, spaces or brackets
    [0] [-1]            an element of an array, counted from the end when negative

There are no wildcards, filters or recursive descent: each path names one value.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from urllib.parse import urlsplit, urlunsplit

from oculus.collectors.base import Collector, Reading
from oculus.collectors.http import http_url
from oculus.collectors.provider import USER_AGENT, Backoff, Provider, ProviderError
from oculus.config.schema import (
    REQUIRED, Field, Invalid, choice, duration, string_map, symbol_name, text, text_keeping_secret,
)
from oculus.config.values import Secret, reveal

# -- JSON paths ------------------------------------------------------------

_STEP = re.compile(r"""
    \.(?P<key>[^.\[\]'"]+)
  | \[(?P<index>-?\d+)\]
  | \['(?P<single>[^']*)'\]
  | \["(?P<double>[^"]*)"\]
""", re.VERBOSE)


@dataclass(frozen=True)
class JsonPath:
    text: str
    steps: tuple  # str for an object member, int for an array index

    def __str__(self) -> str:
        return self.text


class PathNotFound(LookupError):
    """Raised when the document has no value at a path. The message names the last part that exists."""


def compile_path(text: str) -> JsonPath:
    """Compile a path such as $.data.price or $['a.b'][0]; raise ValueError saying what is wrong."""
    if not text.startswith("$"):
        raise ValueError('a path starts with "$", like $.data.price')
    steps = []
    position = 1
    while position < len(text):
        match = _STEP.match(text, position)
        if match is None:
            raise ValueError(f"cannot read {text[position:]!r} at position {position}; "
                             "use .key, ['key'] or [index]")
        if match.group("index") is not None:
            steps.append(int(match.group("index")))
        else:
            steps.append(next(group for group in match.group("key", "single", "double") if group is not None))
        position = match.end()
    return JsonPath(text, tuple(steps))


def _kind(value) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if value is None:
        return "null"
    if isinstance(value, str):
        return "a string"
    return "a number"


def _member(key: str) -> str:
    return f".{key}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key) else f"[{key!r}]"


def resolve(document, path: JsonPath):
    """Return the value at `path`; raise PathNotFound naming the last part that exists."""
    current, where = document, "$"
    for step in path.steps:
        if isinstance(step, int):
            if not isinstance(current, list):
                raise PathNotFound(f"{where} is {_kind(current)}, not an array")
            if not -len(current) <= step < len(current):
                raise PathNotFound(f"{where} has {len(current)} elements, so no index {step}")
            current, where = current[step], f"{where}[{step}]"
        else:
            if not isinstance(current, dict):
                raise PathNotFound(f"{where} is {_kind(current)}, not an object")
            if step not in current:
                raise PathNotFound(f"{where} has no member {step!r}")
            current, where = current[step], where + _member(step)
    return current


def to_number(value, scale: Decimal) -> float:
    """Convert a JSON value to a float times `scale`; true and false count as 1 and 0.

    Numeric strings such as "67018.42000000" are accepted because many APIs
    send prices as strings. Raises ValueError for anything else.
    """
    if isinstance(value, bool):
        exact = Decimal(int(value))
    elif isinstance(value, (int, Decimal)):
        exact = Decimal(value)
    elif isinstance(value, str):
        try:
            exact = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"is the string {value[:40]!r}, not a number") from None
    else:
        raise ValueError(f"is {_kind(value)}, not a number")
    if not exact.is_finite():
        raise ValueError(f"is {value!r}, not a finite number")
    return float(exact * scale)


# -- settings --------------------------------------------------------------


@dataclass(frozen=True)
class ValueSpec:
    """One configured value: where it is in the response, what to multiply it by, its unit."""

    path: JsonPath
    scale: Decimal = Decimal(1)
    unit: str = ""

    def __str__(self) -> str:
        scale = "" if self.scale == 1 else f" x {self.scale}"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.path}{scale}{unit}"


def _path(value) -> JsonPath:
    value = reveal(text(value)).strip()
    try:
        return compile_path(value)
    except ValueError as exc:
        raise Invalid(f'invalid JSON path "{value}": {exc}') from None


def _scale(value) -> Decimal:
    value = reveal(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Invalid(f"expected a number for scale, got {value!r}")
    try:
        scale = Decimal(str(value).strip())
    except InvalidOperation:
        raise Invalid(f"expected a number for scale, got {value!r}") from None
    if not scale.is_finite() or scale == 0:
        raise Invalid(f"expected a finite, non-zero scale, got {value!r}")
    return scale


def _value_spec(field: str, item) -> ValueSpec:
    if not isinstance(item, dict):
        try:
            return ValueSpec(_path(item))
        except Invalid as exc:
            raise Invalid(f"{field}: {exc}") from None
    unknown = sorted(set(map(str, item)) - {"path", "scale", "unit"})
    if unknown:
        raise Invalid(f'{field}: unknown key "{unknown[0]}"; known keys: path, scale, unit')
    if "path" not in item:
        raise Invalid(f'{field}: missing required key "path", a JSON path such as $.data.price')
    try:
        return ValueSpec(_path(item["path"]), _scale(item.get("scale", 1)), str(reveal(item.get("unit") or "")))
    except Invalid as exc:
        raise Invalid(f"{field}: {exc}") from None


def value_specs(value) -> dict[str, ValueSpec]:
    """Parse `values`: field name -> a JSON path, or a mapping with path, scale and unit."""
    if not isinstance(value, dict) or not value:
        raise Invalid("expected a mapping of field names to JSON paths, such as price: {path: $.data.price}")
    specs = {}
    for field, item in value.items():
        try:
            name = symbol_name(field)
        except Invalid:
            raise Invalid(f"field name {field!r}: expected lower-case letters, digits, '_', '-' or ':' "
                          "(no dots, because dots separate the parts of a symbol)") from None
        specs[name] = _value_spec(name, item)
    return specs


def request_body(value):
    """Parse `body`: a string is sent as is, a mapping or list as JSON."""
    if isinstance(value, (dict, list)):
        return value
    return text_keeping_secret(value)


# -- requests --------------------------------------------------------------


def _reveal_all(value):
    if isinstance(value, dict):
        return {key: _reveal_all(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_reveal_all(item) for item in value]
    return reveal(value)


def _secrets_in(value) -> list[str]:
    """Return the revealed secrets in `value` and their words of 8 or more characters.

    A Secret contains the whole substituted string ("Bearer <token>"), and an API
    that echoes the credential usually echoes the token alone.
    """
    if isinstance(value, Secret):
        revealed = value.reveal()
        return [revealed] + [word for word in revealed.split() if len(word) >= 8 and word != revealed]
    if isinstance(value, dict):
        return [secret for item in value.values() for secret in _secrets_in(item)]
    if isinstance(value, list):
        return [secret for item in value for secret in _secrets_in(item)]
    return []


class ConfiguredRequest:
    """Replacement for Provider.session that makes Provider.get send the configured method, headers and body.

    Provider.get always sends GET. Going through it keeps its status checks,
    HTML detection and backoff for every method. Secrets are revealed here,
    at send time only.
    """

    def __init__(self, session, method: str, headers: dict, body):
        self.session = session
        self.method = method.upper()
        self.headers = headers
        self.body = body

    def get(self, url: str, params=None, timeout=None):
        extra = {}
        if isinstance(self.body, (dict, list)):
            extra["json"] = _reveal_all(self.body)
        elif self.body is not None:
            extra["data"] = reveal(self.body).encode("utf-8")
        headers = {name: reveal(value) for name, value in self.headers.items()}
        return self.session.request(self.method, url, params=params, headers=headers, timeout=timeout, **extra)

    def close(self) -> None:
        self.session.close()


_backoffs: dict = {}
_backoffs_lock = threading.Lock()


def shared_backoff(name: str, base_url: str) -> Backoff:
    """Return the Backoff of one (collector name, base URL), kept across config reloads."""
    with _backoffs_lock:
        return _backoffs.setdefault((name, base_url), Backoff())


class JsonApiCollector(Collector):
    TYPE = "json_api"
    CATEGORY = "custom"
    FIELDS = (
        Field("url", http_url, REQUIRED, "URL of the JSON API; may contain ${ENV} references."),
        Field("method", choice("get", "post", "put", "patch"), "get", "HTTP method."),
        Field("headers", string_map, {}, "Request headers; values may be ${ENV} secrets, which are never shown."),
        Field("body", request_body, None, "Request body: a string is sent as is, a mapping or list as JSON."),
        Field("values", value_specs, REQUIRED,
              "Numbers to record, by field name: a JSON path such as $.data.price, "
              "or {path: ..., scale: 1, unit: USD}. Each field becomes custom.<name>.<field>."),
        Field("stale_after", duration(1), None,
              "The dashboard marks a value stale when its last good sample is older than this "
              "(default: twice the interval plus 5 s)."),
    )

    def __init__(self, spec):
        super().__init__(spec)
        options = self.options
        split = urlsplit(reveal(options["url"]))
        base_url = f"{split.scheme}://{split.netloc}"
        self.path = urlunsplit(("", "", split.path or "/", split.query, ""))
        # The host is shown as the source unless the URL came from the environment (it may hold a key).
        self.source = "json_api" if isinstance(options["url"], Secret) else split.hostname or "json_api"
        secrets = _secrets_in([options["url"], options["headers"], options["body"]])
        self.secrets = sorted((s for s in set(secrets) if len(s) >= 4), key=len, reverse=True)

        label = f"json_api {self.name}"
        self.provider = Provider(label, base_url, USER_AGENT, shared_backoff(label, base_url))
        self.provider.session = ConfiguredRequest(self.provider.session, options["method"], options["headers"],
                                                  options["body"])

    @classmethod
    def describe_target(cls, options: dict) -> str:
        return f"{options['method'].upper()} {options['url']}"

    def field_symbol(self, field: str) -> str:
        return f"{self.CATEGORY}.{self.name}.{field}"

    def symbols(self) -> list[str]:
        return [self.field_symbol(field) for field in self.options["values"]]

    def close(self) -> None:
        self.provider.close()

    def collect(self, deadline: float) -> list[Reading]:
        try:
            document = self.provider.get(self.path, deadline).json()
        except ProviderError as exc:
            return [Reading(symbol, None, False, self.scrub(exc.message), {"error_kind": exc.kind})
                    for symbol in self.symbols()]
        self.provider.succeeded()
        return [self.value_reading(field, spec, document) for field, spec in self.options["values"].items()]

    def value_reading(self, field: str, spec: ValueSpec, document) -> Reading:
        """Pick one value out of the response; a missing or non-numeric value fails this field only."""
        symbol = self.field_symbol(field)
        tags = {"source": self.source, "path": spec.path.text}
        if spec.unit:
            tags["unit"] = spec.unit
        try:
            value = to_number(resolve(document, spec.path), spec.scale)
        except PathNotFound as exc:
            return Reading(symbol, None, False, f"no value at {spec.path}: {exc}", tags)
        except ValueError as exc:
            return Reading(symbol, None, False, f"the value at {spec.path} {exc}", tags)
        return Reading(symbol, value, True, None, tags)

    def scrub(self, message: str) -> str:
        """Mask secret values that an API echoed into its error message."""
        for secret in self.secrets:
            message = message.replace(secret, "<secret>")
        return message
