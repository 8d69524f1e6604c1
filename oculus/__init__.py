"""Oculus: self-hosted monitoring of services and markets."""

__version__ = "0.1.0"
