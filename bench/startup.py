"""Start-up: `oculus.pyz --help` against a bare interpreter, and time from process start to /readyz 200.

Runs dist/oculus.pyz (build it with `make dist`) on the interpreter behind
this one, on the embedded default config. The default config also polls
public market APIs, so every run sets http_proxy and https_proxy to a closed
loopback port: those requests fail at once and no traffic leaves the machine.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

# Timed pairs of (bare, --help) per run; the ratio of their medians is one run's value.
PAIRS = {"smoke": 3, "quick": 10, "full": 20}


def offline_env(shiv_root: str) -> dict:
    """Environment that keeps the default config's market requests on loopback."""
    closed = f"http://127.0.0.1:{common.free_port()}"
    return {"SHIV_ROOT": shiv_root, "http_proxy": closed, "https_proxy": closed,
            "HTTP_PROXY": closed, "HTTPS_PROXY": closed, "no_proxy": "127.0.0.1,localhost",
            "NO_PROXY": "127.0.0.1,localhost"}


def time_command(command: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def build_empty_pyz(folder: Path) -> Path:
    """Build a .pyz whose __main__.py does nothing, with as many zip entries as oculus.pyz.

    Python reads the whole zip directory before it runs __main__.py, so this
    bundle's start-up is the floor for any command of a .pyz this size.
    """
    with zipfile.ZipFile(common.PYZ) as bundle:
        entries = len(bundle.namelist())
    output = folder / "empty.pyz"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("__main__.py", "pass\n")
        for index in range(entries - 1):
            bundle.writestr(f"padding/file{index:05d}.txt", "")
    return output


def measure_help(pairs: int, shiv_root: str, empty_pyz: Path) -> dict:
    """Time `pairs` interleaved runs of bare Python, `--help` and the empty bundle; return medians in ms."""
    env = {"PATH": "/usr/bin:/bin", "SHIV_ROOT": shiv_root}
    commands = {"bare": [common.BASE_PYTHON, "-c", "pass"], "help": [common.BASE_PYTHON, str(common.PYZ), "--help"],
                "empty": [common.BASE_PYTHON, str(empty_pyz)]}
    for command in commands.values():
        time_command(command, env)  # extracts each bundle once, so every timed run is warm
    timings = {name: [] for name in commands}
    for _ in range(pairs):
        for name, command in commands.items():
            timings[name].append(time_command(command, env))
    return {name: statistics.median(values) * 1000 for name, values in timings.items()}


def measure_ready(shiv_root: str) -> float:
    """Spawn the .pyz on the default config and return the seconds until /readyz returns 200."""
    env = offline_env(shiv_root)
    with tempfile.TemporaryDirectory(prefix="oculus-bench-") as workdir:
        # `env` carries SHIV_ROOT, which wins over the per-run folder the Oculus helper would pick.
        oculus = common.Oculus(None, use_pyz=True, workdir=workdir, env=env)
        try:
            oculus.start()
            return oculus.start_seconds
        finally:
            oculus.stop()


def help_sections(ratios: list, help_ms: list, empty_ratios: list, empty_ms: list) -> list[dict]:
    """Explain the --help figure from the measured floor: how much is the archive's and how much is Oculus's."""
    with zipfile.ZipFile(common.PYZ) as bundle:
        entries = len(bundle.namelist())
    floor, ratio = statistics.median(empty_ratios), statistics.median(ratios)
    own_ms = statistics.median(help_ms) - statistics.median(empty_ms)
    text = (f"oculus.pyz parses its command line from inside the archive before shiv's bootstrap runs "
            "(zipapp_main.py), so `--help`, `version` and usage errors never import shiv's 36 modules or check "
            f"the unpacked copy. A .pyz whose __main__.py does nothing, with the same {entries:,} zip entries, "
            f"starts in {floor:.2f} × the bare interpreter's time, because Python reads the whole zip directory "
            f"first. `oculus.pyz --help` takes {ratio:.2f} ×: importing Oculus's command-line module from the "
            f"archive, argparse and formatting the help add {own_ms:.0f} ms to that floor.")
    return [{"title": "Where the --help time goes", "text": text}]


def main(argv=None) -> int:
    args = common.parse_args(__doc__.splitlines()[0], argv)
    started = time.time()
    common.oculus_command(use_pyz=True)  # fails early with a hint when dist/oculus.pyz is missing

    ratios, help_ms, bare_ms, empty_ratios, empty_ms, warm, cold = [], [], [], [], [], [], []
    with tempfile.TemporaryDirectory(prefix="oculus-shiv-") as warm_root:
        empty_pyz = build_empty_pyz(Path(warm_root) / "empty")
        for run in range(args.runs):
            timings = measure_help(PAIRS[args.mode], warm_root, empty_pyz)
            ratios.append(timings["help"] / timings["bare"])
            help_ms.append(timings["help"])
            bare_ms.append(timings["bare"])
            empty_ratios.append(timings["empty"] / timings["bare"])
            empty_ms.append(timings["empty"])
            warm.append(measure_ready(warm_root) * 1000)
            with tempfile.TemporaryDirectory(prefix="oculus-shiv-cold-") as cold_root:
                cold.append(measure_ready(cold_root) * 1000)
            print(f"run {run + 1}/{args.runs}: --help {timings['help']:.0f} ms, bare {timings['bare']:.0f} ms, "
                  f"ratio {ratios[-1]:.2f}, empty .pyz {timings['empty']:.0f} ms; "
                  f"ready warm {warm[-1]:.0f} ms, cold {cold[-1]:.0f} ms", flush=True)

    figures = [
        common.figure("help_ratio", "`oculus.pyz --help` / bare `python3 -c pass`", ratios, "×", ("<=", 1.5),
                      "seed: under 100 ms",
                      f"median of {PAIRS[args.mode]} interleaved pairs per run, warm extraction"),
        common.figure("help_ms", "`oculus.pyz --help`, warm extraction", help_ms, "ms"),
        common.figure("bare_ms", "bare `python3 -c pass`", bare_ms, "ms"),
        common.figure("empty_pyz_ratio", "floor: a .pyz that does nothing / bare", empty_ratios, "×", None, "",
                      "as many zip entries as oculus.pyz, no shiv"),
        common.figure("ready_warm_ms", "start to `/readyz` 200, default config, warm extraction", warm, "ms",
                      ("<=", 600), "Prometheus ~65 ms, Alertmanager ~90 ms"),
        common.figure("ready_cold_ms", "start to `/readyz` 200, default config, cold extraction", cold, "ms",
                      None, "", "a new SHIV_ROOT for every run, so shiv unpacks the whole bundle first"),
    ]
    common.save_result("startup", "Start-up", args, started, figures, help_sections(ratios, help_ms, empty_ratios,
                                                                                    empty_ms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
