"""Load, validate and merge the Oculus configuration.

Precedence for every setting: CLI flag > ``OCULUS_*`` environment variable >
config file > built-in default. Every problem is collected, so ``oculus check``
can print them all at once.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace

from oculus.config import schema
from oculus.config.schema import CHANNEL_COMMON, CHANNEL_FIELDS, COLLECTOR_COMMON, DEFAULT_BATCH, SECTIONS, Invalid
from oculus.config.values import Secret, format_duration, parse_duration, reveal
from oculus.config.yamlsource import Located, YamlSyntaxError, load_located
from oculus.resources import default_config_path

__all__ = [
    "ChannelSpec",
    "CollectorSpec",
    "Config",
    "ConfigError",
    "Problem",
    "Secret",
    "format_duration",
    "load_config",
    "parse_duration",
    "reveal",
]

EMBEDDED_DEFAULT = "<embedded default>"
LOG_CHANNEL = "log"
TOP_LEVEL_KEYS = tuple(s.name for s in SECTIONS) + ("collectors", "rules", "channels")
# ${NAME}, ${NAME:-default}, the escape $$, or any other ${...} (reported as malformed).
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\$|\$\{[^}]*\}?")
UNRESOLVED = object()


def expand_references(value: str, env: Mapping[str, str], builtins: Mapping[str, str]):
    """Expand references in `value`; return (text, names read from env, problem messages)."""
    referenced: set = set()
    problems: list = []

    def replace(match: re.Match) -> str:
        whole, name, default = match.group(0), match.group(1), match.group(2)
        if whole == "$$":
            return "$"
        if name is None:
            problems.append(f"invalid reference {whole}; write ${{NAME}} or ${{NAME:-default}} "
                            "with a name of letters, digits and '_', or $$ for a literal $")
            return ""
        if name in builtins:
            return builtins[name]
        referenced.add(name)
        if env.get(name):
            return env[name]
        if default is not None:
            return default
        if name in env:
            return ""
        problems.append(f"environment variable {name} is not set; export it or write ${{{name}:-default}}")
        return ""

    return _ENV_REF.sub(replace, value), referenced, problems


@dataclass(frozen=True)
class Problem:
    source: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """Raised with every problem found in one config."""

    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass
class CollectorSpec:
    type: str
    name: str
    interval: float
    timeout: float
    tags: dict
    options: dict

    @property
    def key(self) -> str:
        return f"{self.type}:{self.name}"

    def public_dict(self) -> dict:
        """Return the effective settings with secrets masked, for the API and logs."""
        return {
            "type": self.type, "name": self.name,
            "interval": format_duration(self.interval), "timeout": format_duration(self.timeout),
            "tags": {k: str(v) for k, v in self.tags.items()},
            **{k: _mask(v) for k, v in self.options.items()},
        }


@dataclass
class ChannelSpec:
    """One validated notification channel; `options` contains the fields of its type (secrets as Secret)."""

    name: str
    type: str
    batch: float
    retries: int
    retry_delay: float
    timeout: float
    mention: str | None = None
    options: dict = field(default_factory=dict)

    def public_dict(self) -> dict:
        """Return the effective settings with secrets masked, for the API, logs and `oculus notify test`."""
        return {
            "name": self.name, "type": self.type, "batch": format_duration(self.batch), "retries": self.retries,
            "retry_delay": format_duration(self.retry_delay), "timeout": format_duration(self.timeout),
            "mention": self.mention, **{k: _mask(v) for k, v in self.options.items()},
        }


def log_channel() -> ChannelSpec:
    """Return the log channel that every config has, declared or not."""
    return ChannelSpec(LOG_CHANNEL, "log", 0.0, 0, 10.0, 10.0)


def _mask(value):
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Secret):
        return str(value)
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask(v) for v in value]
    return str(value)


@dataclass
class Config:
    source: str
    server: SimpleNamespace
    database: SimpleNamespace
    logging: SimpleNamespace
    runtime: SimpleNamespace
    alerting: SimpleNamespace
    notifications: SimpleNamespace
    collectors: list = field(default_factory=list)
    rules: list = field(default_factory=list)
    channels: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    @property
    def self_url(self) -> str:
        """Base URL at which this instance's web server is reached from the same host."""
        return self_url(self.server.bind, self.server.port)


def self_url(bind: str, port: int) -> str:
    host = bind
    if host in ("0.0.0.0", "", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class _Loader:
    """One validation pass over one YAML document."""

    def __init__(self, source: str, located: Located, env: Mapping[str, str], flags: Mapping[str, object],
                 builtins: Mapping[str, str]):
        self.source = source
        self.builtins = builtins
        self.located = located
        self.env = env
        self.flags = flags
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def problem(self, path: tuple, message: str, line: int | None = None) -> None:
        if line is None:
            line = self.located.line_of(path)
        self.problems.append(Problem(self.source, line, _format_path(path), message))

    def unknown_key(self, path: tuple, key, known) -> None:
        hint = difflib.get_close_matches(str(key), [str(k) for k in known], n=1)
        suggestion = f'; did you mean "{hint[0]}"?' if hint else f"; known keys: {', '.join(map(str, known))}"
        self.problem(path + (key,), f"unknown key{suggestion}")

    # -- ${ENV} references -------------------------------------------------

    def substitute(self, value, path: tuple):
        """Replace ${NAME} and ${NAME:-default} in strings; a value from the environment becomes a Secret.

        A value whose variable is missing becomes UNRESOLVED, so the field is
        reported once (missing variable) rather than again as an invalid value.
        """
        if isinstance(value, dict):
            return {k: self.substitute(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.substitute(v, path + (i,)) for i, v in enumerate(value)]
        if not isinstance(value, str) or "$" not in value:
            return value

        result, referenced, problems = expand_references(value, self.env, self.builtins)
        for message in problems:
            self.problem(path, message)
        if problems:
            return UNRESOLVED
        # Any value taken from the environment may be a secret; built-ins such as OCULUS_URL are not.
        return Secret(result) if referenced else result

    # -- sections ----------------------------------------------------------

    def section(self, section: schema.Section, raw) -> SimpleNamespace:
        path = (section.name,)
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.problem(path, f"expected a mapping of settings, got {type(raw).__name__}")
            raw = {}
        for key in raw:
            if section.field_named(str(key)) is None:
                self.unknown_key(path, key, [f.name for f in section.fields])

        values = {}
        for f in section.fields:
            values[f.name] = self.field_value(f, raw, path)
        return SimpleNamespace(**values)

    def field_value(self, f: schema.Field, raw: dict, path: tuple):
        """Resolve one setting: flag, then environment, then file, then default."""
        if f.flag and self.flags.get(f.name) is not None:
            return self.parse(f, self.flags[f.name], (), f"command-line option {f.flag}")
        if f.env and self.env.get(f.env) not in (None, ""):
            return self.parse(f, self.env[f.env], (), f"environment variable {f.env}")
        if f.name in raw:
            return self.parse(f, raw[f.name], path + (f.name,))
        if f.required:
            self.problem(path, f'missing required key "{f.name}": {f.help}')
            return None
        return f.default

    def parse(self, f: schema.Field, value, path: tuple, origin: str | None = None):
        if value is UNRESOLVED:
            return None
        try:
            return f.parse(value)
        except Invalid as exc:
            if origin:
                self.problems.append(Problem(origin, None, "", f"{f.name}: {exc}"))
            else:
                self.problem(path, str(exc))
            return None

    # -- collectors --------------------------------------------------------

    def collectors(self, raw) -> list[CollectorSpec]:
        from oculus.collectors import registry

        if raw is None:
            return []
        if not isinstance(raw, list):
            self.problem(("collectors",), "expected a list of collectors, each starting with '- type: ...'")
            return []

        specs = []
        seen = {}
        for index, item in enumerate(raw):
            path = ("collectors", index)
            spec = self.collector(item, path, registry)
            if spec is None:
                continue
            if spec.key in seen:
                self.problem(path + ("name",), f'duplicate collector "{spec.name}" of type {spec.type}; '
                             f"collectors[{seen[spec.key]}] has the same name")
                continue
            seen[spec.key] = index
            specs.append(spec)
        return specs

    def collector(self, item, path: tuple, registry) -> CollectorSpec | None:
        if not isinstance(item, dict):
            self.problem(path, "expected a mapping with at least 'type' and 'name'")
            return None
        kind = item.get("type")
        if "type" not in item:
            self.problem(path, f'missing required key "type": one of {", ".join(registry.known_types())}')
            return None
        if not isinstance(kind, str) or kind not in registry.known_types():
            known = ", ".join(registry.known_types())
            self.problem(path + ("type",), f'unknown collector type {_quoted(kind)}; known types: {known}')
            return None

        cls = registry.collector_class(kind)
        fields = COLLECTOR_COMMON + tuple(cls.FIELDS)
        names = [f.name for f in fields]
        for key in item:
            if key not in names:
                self.unknown_key(path, key, names)

        values = {}
        before = len(self.problems)
        for f in fields:
            if f.name in item:
                values[f.name] = self.parse(f, item[f.name], path + (f.name,))
            elif f.name == "name" and cls.DEFAULT_NAME:
                values["name"] = cls.DEFAULT_NAME
            elif f.name == "interval" and cls.DEFAULT_INTERVAL:
                values["interval"] = cls.DEFAULT_INTERVAL
            elif f.required:
                self.problem(path, f'missing required key "{f.name}": {f.help}')
            else:
                values[f.name] = f.default
        if len(self.problems) > before:
            return None

        for key, message in cls.check_options(values):
            self.problem(path + ((key,) if key else ()), message)
        if len(self.problems) > before:
            return None

        common = {f.name: values.pop(f.name) for f in COLLECTOR_COMMON}
        return CollectorSpec(options=values, **common)

    # -- rules -------------------------------------------------------------

    def rules(self, raw, collectors: list, channels: dict, default_channels: dict) -> list:
        from oculus.rules.spec import RuleLoader

        return RuleLoader(self, collectors, channels, default_channels).load(raw)

    # -- notification channels ---------------------------------------------

    def channels(self, raw) -> dict[str, ChannelSpec]:
        """Validate `channels:`; the log channel exists even when it is not declared."""
        channels = {LOG_CHANNEL: log_channel()}
        if raw is None:
            return channels
        if not isinstance(raw, dict):
            self.problem(("channels",), "expected a mapping of channel names to settings, such as "
                         "{ops_mail: {type: email, ...}}")
            return channels
        for name, item in raw.items():
            path = ("channels", name)
            try:
                schema.symbol_name(name)
            except Invalid as exc:
                self.problem(path, f"invalid channel name: {exc}")
                continue
            spec = self.channel(str(name), item, path)
            if spec is not None:
                channels[spec.name] = spec
        return channels

    def channel(self, name: str, item, path: tuple) -> ChannelSpec | None:
        if not isinstance(item, dict):
            self.problem(path, f"expected a mapping with a type, one of {', '.join(schema.CHANNEL_TYPES)}")
            return None
        if "type" not in item:
            self.problem(path, f'missing required key "type": one of {", ".join(schema.CHANNEL_TYPES)}')
            return None
        kind = reveal(item["type"])
        if kind not in CHANNEL_FIELDS:
            self.problem(path + ("type",), f"unknown channel type {_quoted(kind)}; known types: "
                         f"{', '.join(schema.CHANNEL_TYPES)}")
            return None

        fields = CHANNEL_COMMON + CHANNEL_FIELDS[kind]
        names = [f.name for f in fields]
        for key in item:
            if key not in names:
                self.unknown_key(path, key, names)
        values = {}
        before = len(self.problems)
        for f in fields:
            if f.name in item:
                values[f.name] = self.parse(f, item[f.name], path + (f.name,))
            elif f.required:
                self.problem(path, f'missing required key "{f.name}": {f.help}')
            else:
                values[f.name] = f.default
        if len(self.problems) > before:
            return None

        common = {f.name: values.pop(f.name) for f in CHANNEL_COMMON}
        if common["batch"] is None:
            common["batch"] = DEFAULT_BATCH.get(kind, 0.0)
        spec = ChannelSpec(name=name, options=values, **common)

        # Built once here, so a URL that apprise rejects is a config error rather than a failure at the first alert.
        from oculus.notify.channels import channel_problem

        problem = channel_problem(spec)
        if problem is not None:
            self.problem(path, problem)
            return None
        return spec

    def default_channels(self, notifications: SimpleNamespace, channels: dict) -> None:
        """Report the channel names in notifications.default_channels that are not configured."""
        for severity, names in (notifications.default_channels or {}).items():
            for name in names:
                if name not in channels:
                    self.problem(("notifications", "default_channels", severity),
                                 unknown_channel_message(name, channels))

    # -- whole document ----------------------------------------------------

    def load(self) -> Config:
        data = self.located.data
        if data is None:
            data = {}
        if not isinstance(data, dict):
            self.problem((), "expected a mapping at the top level (server:, database:, collectors: ...)", line=1)
            data = {}
        for key_path, line in self.located.duplicates:
            self.problem(key_path, "duplicate key; the later value would silently replace the earlier one", line)
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                self.unknown_key((), key, TOP_LEVEL_KEYS)

        data = self.substitute(data, ())
        sections = {s.name: self.section(s, data.get(s.name)) for s in SECTIONS}
        collectors = self.collectors(data.get("collectors"))

        channels = self.channels(data.get("channels"))
        notifications = sections["notifications"]
        self.default_channels(notifications, channels)
        rules = self.rules(data.get("rules"), collectors, channels, notifications.default_channels or {})

        if self.problems:
            raise ConfigError(self.problems)
        return Config(self.source, collectors=collectors, rules=rules, channels=channels,
                      warnings=self.warnings, **sections)


def unknown_channel_message(name: str, channels: dict) -> str:
    """Describe a channel name that is not configured, with a "did you mean" hint."""
    hint = difflib.get_close_matches(name, list(channels), n=1)
    message = f'unknown channel "{name}"; configured channels: {", ".join(sorted(channels))}'
    return message + (f'; did you mean "{hint[0]}"?' if hint else "; declare it under channels:")


def _quoted(value) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _format_path(path: tuple) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def load_config(path: str | None = None, env: Mapping[str, str] | None = None,
                flags: Mapping[str, object] | None = None) -> Config:
    """Load the config at `path`, or the embedded default when `path` is None.

    `flags` maps setting names (bind, port, path, level, format) to CLI values
    (None when not given). Raises ConfigError listing every problem.
    """
    env = dict(os.environ if env is None else env)
    flags = dict(flags or {})
    if path is None:
        source, file_path = EMBEDDED_DEFAULT, default_config_path()
    else:
        source, file_path = path, path

    try:
        with open(file_path, encoding="utf-8") as handle:
            text_content = handle.read()
    except FileNotFoundError:
        message = "file not found; pass an existing file with -c, or omit -c to use the embedded default"
        raise ConfigError([Problem(source, None, "", message)]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(source, None, "", f"cannot read the file: {exc}")]) from None

    try:
        located = load_located(text_content)
    except YamlSyntaxError as exc:
        raise ConfigError([Problem(source, exc.line, "", exc.message)]) from None

    builtins = _builtins(located.data, env, flags)
    return _Loader(source, located, env, flags, builtins).load()


def _builtins(data, env: Mapping[str, str], flags: dict) -> dict[str, str]:
    """Values of ${OCULUS_URL} and ${OCULUS_SELF_PORT}: this instance's own address, so a config can probe itself.

    Port 0 means "any free port": one is picked here and pinned in `flags`, so
    the web server and the self-probes agree on it.
    """
    server = data.get("server") if isinstance(data, dict) else None
    server = server if isinstance(server, dict) else {}

    def setting(name: str, variable: str):
        if flags.get(name) not in (None, ""):
            return str(flags[name])
        if env.get(variable):
            return env[variable]
        if name in server and server[name] is not None:
            expanded, _, problems = expand_references(str(server[name]), env, {})
            if not problems:
                return expanded
        return str(schema.SERVER.field_named(name).default)

    bind = setting("bind", "OCULUS_BIND")
    port = setting("port", "OCULUS_PORT")
    if port.strip() == "0":
        port = str(_free_port(bind))
        flags["port"] = port
    if not port.strip().isdigit():
        port = str(schema.SERVER.field_named("port").default)  # the port's own error is reported elsewhere
    return {"OCULUS_URL": self_url(bind, port), "OCULUS_SELF_PORT": port}


def _free_port(bind: str) -> int:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    host = "" if bind in ("0.0.0.0", "::", "*") else bind
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            return sock.getsockname()[1]
    except OSError:
        return 0
