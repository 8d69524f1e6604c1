"""Locate templates, static files and the default config, in a checkout or in the .pyz."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def asset_root() -> Path:
    """Return the directory holding templates/, static/ and configs/.

    build_zipapp.py copies them into ``oculus/_assets`` inside the bundle; in a
    source checkout they sit next to the package.
    """
    bundled = _PACKAGE / "_assets"
    if bundled.is_dir():
        return bundled
    return _PACKAGE.parent


def asset_path(*parts: str) -> Path:
    return asset_root().joinpath(*parts)


def default_config_path() -> Path:
    return asset_path("configs", "default.yaml")
