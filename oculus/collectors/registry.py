"""Map collector type names to their classes; adding a type adds one line here."""

from __future__ import annotations

import importlib

_TYPES = {
    "http": "oculus.collectors.http:HttpCollector",
    "ping": "oculus.collectors.ping:PingCollector",
    "tcp": "oculus.collectors.tcp:TcpCollector",
    "crypto": "oculus.collectors.crypto:CryptoCollector",
    "fear_greed": "oculus.collectors.fear_greed:FearGreedCollector",
    "mvrv": "oculus.collectors.mvrv:MvrvCollector",
    "altseason": "oculus.collectors.altseason:AltseasonCollector",
    "polymarket": "oculus.collectors.polymarket:PolymarketCollector",
    "moving_average": "oculus.collectors.moving_average:MovingAverageCollector",
    "stock": "oculus.collectors.stock:StockCollector",
    "json_api": "oculus.collectors.json_api:JsonApiCollector",
    "plugin": "oculus.collectors.plugin:PluginCollector",
}


def known_types() -> list[str]:
    return sorted(_TYPES)


def collector_class(type_name: str):
    module_name, _, class_name = _TYPES[type_name].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def create(spec):
    return collector_class(spec.type)(spec)
