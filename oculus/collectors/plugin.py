"""User plugins: a collector class loaded from a Python file named in the config.

    - type: plugin
      name: queue_depth
      path: /etc/oculus/plugins/queue_depth.py
      class: QueueDepthCollector
      options: {url: "http://127.0.0.1:9000/stats"}

The file is imported by path when the config is loaded, so an import error or
a missing class is reported by `oculus check` like any other config problem.
The class subclasses oculus.collectors.base.Collector, or at least defines
collect(deadline) and symbols(). It is built with the collector's spec, reads
its own settings from self.options["options"] and runs like a built-in
collector: same schedule, timeout and handling of exceptions.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import sys
import threading
from datetime import datetime, timezone
from decimal import Decimal

from oculus.collectors.base import Collector, Reading
from oculus.config.schema import REQUIRED, Field, Invalid, text
from oculus.config.values import reveal

log = logging.getLogger(__name__)

_CATEGORY = re.compile(r"[a-z][a-z0-9_]*")
_SYMBOL = re.compile(r"[a-z0-9_:\-]+(\.[a-z0-9_:\-]+)+")

# One module per file version: (absolute path, mtime_ns, size) -> module. A reload after an
# edit imports the new version; an unchanged file is not executed again for every check.
_modules: dict = {}
_modules_lock = threading.Lock()


class PluginError(Exception):
    """Raised for a plugin that cannot be used. `key` is the config key to fix (path or class)."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key
        self.message = message


# -- settings --------------------------------------------------------------


def plugin_path(value) -> str:
    path = os.path.expanduser(str(reveal(text(value))).strip())
    if not os.path.isabs(path):
        raise Invalid(f'expected an absolute path to a .py file, got "{value}"')
    return path


def class_name(value) -> str:
    value = reveal(text(value)).strip()
    if not value.isidentifier():
        raise Invalid(f'expected a Python class name such as MyCollector, got "{value}"')
    return value


def plugin_options(value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid(f"expected a mapping of settings for the plugin, got {type(value).__name__}")
    return value


# -- loading ---------------------------------------------------------------


def import_plugin_file(path: str):
    """Import the Python file at `path` as a module of its own, or raise PluginError saying why it failed."""
    try:
        stat = os.stat(path)
    except OSError as exc:
        raise PluginError("path", f"cannot read {path}: {exc.strerror}") from None
    key = (path, stat.st_mtime_ns, stat.st_size)
    with _modules_lock:
        if key in _modules:
            return _modules[key]

        stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
        name = f"oculus_plugin_{stem}_{hashlib.sha1(path.encode()).hexdigest()[:8]}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise PluginError("path", f"cannot import {path}: expected a Python source file ending in .py")
        module = importlib.util.module_from_spec(spec)
        # Registered before it runs, because dataclasses and pickle look classes up by module name.
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except SyntaxError as exc:
            del sys.modules[name]
            raise PluginError("path", f"cannot import {path}: syntax error on line {exc.lineno}: {exc.msg}") from None
        except Exception as exc:  # any error raised by the plugin's top-level code
            del sys.modules[name]
            raise PluginError("path", f"cannot import {path}: {type(exc).__name__}: {exc}") from None

        for old in [k for k in _modules if k[0] == path]:
            del _modules[old]
        _modules[key] = module
        return module


def load_plugin_class(path: str, name: str) -> type:
    """Return the collector class `name` defined in the file at `path`, or raise PluginError if it is unusable."""
    module = import_plugin_file(path)
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        defined = sorted(n for n, v in vars(module).items()
                         if isinstance(v, type) and v.__module__ == module.__name__)
        raise PluginError("class", f'no class "{name}" in {path}; classes defined there: '
                                   f'{", ".join(defined) or "none"}')
    if not issubclass(cls, Collector) and not all(callable(getattr(cls, m, None)) for m in ("collect", "symbols")):
        raise PluginError("class", f"{name} in {path} must subclass oculus.collectors.base.Collector "
                                   "or define collect(deadline) and symbols()")
    category = plugin_category(cls)
    if not _CATEGORY.fullmatch(category):
        raise PluginError("class", f'{name}.CATEGORY must be a lower-case word such as "custom", got {category!r}')
    return cls


def plugin_category(cls: type) -> str:
    """Return the CATEGORY the plugin class sets itself, or "custom" (never the base class's "net")."""
    for klass in cls.__mro__:
        if klass is Collector or klass is object:
            break
        if "CATEGORY" in vars(klass):
            return str(klass.CATEGORY)
    return "custom"


def _plugin_problems(cls: type, options: dict) -> list[tuple[str | None, str]]:
    """Run the plugin's own check_options(options), if it defines one, with keys under `options`."""
    check = getattr(cls, "check_options", None)
    if check is None or getattr(check, "__func__", None) is Collector.check_options.__func__:
        return []
    try:
        problems = list(check(dict(options)))
    except Exception as exc:  # plugin code: report it as a config problem rather than a traceback
        return [("options", f"check_options() of {cls.__name__} raised {type(exc).__name__}: {exc}")]
    return [(f"options.{key}" if key else "options", str(message)) for key, message in problems]


# -- the collector ---------------------------------------------------------


class PluginCollector(Collector):
    """Wrapper that runs a user's collector class and checks what it returns before the runtime stores it."""

    TYPE = "plugin"
    CATEGORY = "custom"
    FIELDS = (
        Field("path", plugin_path, REQUIRED, "Absolute path of the Python file that defines the collector class."),
        Field("class", class_name, REQUIRED, "Name of the collector class in that file."),
        Field("options", plugin_options, {},
              'Settings handed to the plugin, which reads them as self.options["options"].'),
    )

    def __init__(self, spec):
        self._plugin = None
        self._reader = None
        super().__init__(spec)
        self.load_error: str | None = None
        try:
            cls = load_plugin_class(self.options["path"], self.options["class"])
            self.CATEGORY = plugin_category(cls)
            self._plugin = cls(spec)
        except PluginError as exc:
            self.load_error = exc.message
        except Exception as exc:  # the plugin's __init__ failed
            self.load_error = f"{self.options['class']}() failed: {type(exc).__name__}: {exc}"
        if self.load_error:
            log.error("plugin cannot be loaded collector=%s error=%s", spec.key, self.load_error)
        self.reader = self._reader

    @classmethod
    def check_options(cls, values: dict) -> list[tuple[str | None, str]]:
        try:
            plugin_class = load_plugin_class(values["path"], values["class"])
        except PluginError as exc:
            return [(exc.key, exc.message)]
        return _plugin_problems(plugin_class, values["options"])

    @classmethod
    def describe_target(cls, options: dict) -> str:
        return f"{options['class']} from {options['path']}"

    @property
    def reader(self):
        return self._reader

    @reader.setter
    def reader(self, value) -> None:
        # The runtime sets the reader on this wrapper; the plugin needs it to read stored history.
        self._reader = value
        if self._plugin is not None:
            try:
                self._plugin.reader = value
            except AttributeError:  # a plugin class with __slots__ and no reader slot
                pass

    @property
    def error_symbol(self) -> str:
        """Where failures are recorded when the plugin cannot be loaded or cannot list its symbols."""
        return f"{self.CATEGORY}.plugin.{self.name}.error"

    def symbols(self) -> list[str]:
        if self._plugin is None:
            return [self.error_symbol]
        try:
            symbols = [str(symbol) for symbol in self._plugin.symbols()]
        except Exception:  # plugin code: its failures still need a symbol to be recorded on
            log.warning("plugin cannot list its symbols collector=%s", self.spec.key, exc_info=True)
            return [self.error_symbol]
        return symbols or [self.error_symbol]

    def collect(self, deadline: float) -> list[Reading]:
        """Run the plugin; exceptions propagate so the runtime records them as failed samples."""
        if self._plugin is None:
            return self.failed(self.load_error or "plugin not loaded")
        readings = self._plugin.collect(deadline)
        if readings is None or isinstance(readings, (str, bytes, dict)):
            raise TypeError(f"{self.options['class']}.collect() must return a list of Reading, "
                            f"got {type(readings).__name__}")
        return [self.checked(reading) for reading in readings]

    def checked(self, reading) -> Reading:
        """Validate one plugin reading and return a copy the writer can store.

        A bad symbol or bad tags raise, because they are plugin bugs. A value
        that is not a number fails this reading only.
        """
        plugin = self.options["class"]
        if not isinstance(reading, Reading):
            raise TypeError(f"{plugin}.collect() must return Reading objects, got {type(reading).__name__}")
        symbol = reading.symbol
        if not isinstance(symbol, str) or not _SYMBOL.fullmatch(symbol) or not symbol.startswith(self.CATEGORY + "."):
            raise ValueError(f"{plugin} returned the symbol {symbol!r}; expected lower-case parts joined by dots, "
                             f'starting with its category "{self.CATEGORY}."')
        if not isinstance(reading.tags, dict):
            raise TypeError(f"{plugin} returned tags of type {type(reading.tags).__name__} for {symbol}; "
                            "expected a dict")

        value, success, error = reading.value, bool(reading.success), reading.error
        if value is not None:
            if isinstance(value, (int, float, Decimal)):
                value = float(value)
            else:
                value, success = None, False
                error = f"{plugin} returned a {type(reading.value).__name__} value, expected a number"
        return Reading(symbol, value, success, error, dict(reading.tags), _naive_utc(reading.ts))

    def close(self) -> None:
        close = getattr(self._plugin, "close", None)
        if callable(close):
            try:
                close()
            except Exception:  # plugin code: one failed close() must not stop the others
                log.warning("plugin close() failed collector=%s", self.spec.key, exc_info=True)


def _naive_utc(ts) -> datetime | None:
    if ts is None:
        return None
    if not isinstance(ts, datetime):
        raise TypeError(f"Reading.ts must be a datetime or None, got {type(ts).__name__}")
    if ts.tzinfo is None:
        return ts
    return ts.astimezone(timezone.utc).replace(tzinfo=None)
