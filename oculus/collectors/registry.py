"""Map collector type names to their classes; adding a type adds one line here."""

from __future__ import annotations

import importlib

_TYPES = {
    "http": "oculus.collectors.http:HttpCollector",
    "ping": "oculus.collectors.ping:PingCollector",
    "tcp": "oculus.collectors.tcp:TcpCollector",
}


def known_types() -> list[str]:
    return sorted(_TYPES)


def collector_class(type_name: str):
    module_name, _, class_name = _TYPES[type_name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def create(spec):
    return collector_class(spec.type)(spec)
