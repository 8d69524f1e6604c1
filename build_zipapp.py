#!/usr/bin/env python3
"""Build dist/oculus.pyz: Oculus, its dependencies, templates, static files and the default config.

Usage: python3 build_zipapp.py [--output PATH]

Runs from any directory. Needs pip and shiv in the running interpreter
(`make dist` uses the project's virtual environment). The bundle contains
compiled wheels (duckdb) for this interpreter's Python version only, which is
recorded in oculus/_build.json so the .pyz can refuse a mismatching Python with
a clear message.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import py_compile
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
ASSET_DIRS = ("templates", "static", "configs")
LAUNCHER = ROOT / "zipapp_main.py"
# The modules zipapp_main.py imports from the archive. Their bytecode goes into the archive as legacy
# .pyc files next to the sources, because zipimport never writes bytecode and would compile them at every start.
LAUNCHER_MODULES = ("oculus/__init__", "oculus/cli")
# Not needed at run time: package build sources, tests and type stubs of the bundled libraries.
PRUNE_NAMES = {"__pycache__", "tests", "test"}


def run(command: list[str]) -> None:
    print("+", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def stage(site_packages: Path) -> None:
    """pip-install Oculus and its dependencies into `site_packages`, then add the assets."""
    if site_packages.exists():
        shutil.rmtree(site_packages)
    site_packages.mkdir(parents=True)
    run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-compile", "--target", str(site_packages), str(ROOT)])

    assets = site_packages / "oculus" / "_assets"
    for name in ASSET_DIRS:
        shutil.copytree(ROOT / name, assets / name,
                        ignore=shutil.ignore_patterns("src", "*.map", ".*"))

    build_info = {
        "python": list(sys.version_info[:2]),
        "platform": platform.machine(),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (site_packages / "oculus" / "_build.json").write_text(json.dumps(build_info), encoding="utf-8")

    for path in sorted(site_packages.rglob("*"), reverse=True):
        if path.is_dir() and path.name in PRUNE_NAMES and path.parent.name != "oculus":
            shutil.rmtree(path, ignore_errors=True)


def install_launcher(archive: Path, site_packages: Path) -> None:
    """Rewrite the shiv archive with zipapp_main.py as its __main__.py and bytecode for the modules it imports."""
    with archive.open("rb") as handle:
        shebang = handle.readline()
    with tempfile.TemporaryDirectory() as work:
        bytecode = {}
        for module in LAUNCHER_MODULES:
            compiled = Path(work) / f"{module.replace('/', '.')}.pyc"
            # Unchecked hash-based bytecode does not depend on the zip entries' timestamps.
            py_compile.compile(str(site_packages / f"{module}.py"), cfile=str(compiled), dfile=f"{module}.py",
                               doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
            bytecode[f"site-packages/{module}.pyc"] = compiled.read_bytes()

        rewritten = archive.with_name(archive.name + ".partial")
        with zipfile.ZipFile(archive) as source, rewritten.open("wb") as output:
            output.write(shebang)
            with zipfile.ZipFile(output, "w") as target:
                for info in source.infolist():
                    payload = LAUNCHER.read_bytes() if info.filename == "__main__.py" else source.read(info)
                    target.writestr(copy.copy(info), payload)
                    compiled_name = info.filename[:-3] + ".pyc"
                    if compiled_name in bytecode:
                        entry = copy.copy(info)
                        entry.filename = compiled_name
                        target.writestr(entry, bytecode.pop(compiled_name))
        if bytecode:
            raise SystemExit(f"error: the archive has no source for {', '.join(bytecode)}; "
                             "correct LAUNCHER_MODULES in build_zipapp.py")
    os.chmod(rewritten, archive.stat().st_mode)
    rewritten.replace(archive)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default=str(ROOT / "dist" / "oculus.pyz"), help="path of the .pyz to write")
    args = parser.parse_args()

    try:
        import shiv  # noqa: F401
    except ImportError:
        print("error: shiv is not installed in this Python; run 'make dist', or 'pip install shiv' first",
              file=sys.stderr)
        return 1

    site_packages = ROOT / "build" / "zipapp" / "site-packages"
    stage(site_packages)
    output = Path(args.output).resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    run([sys.executable, "-m", "shiv", "--site-packages", str(site_packages), "--entry-point", "oculus.cli:main",
         "--output-file", str(output), "--python", "/usr/bin/env python3", "--compressed", "--reproducible"])
    install_launcher(output, site_packages)
    size_mb = output.stat().st_size / 1e6
    print(f"built {output} ({size_mb:.1f} MB) for Python {sys.version_info[0]}.{sys.version_info[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
