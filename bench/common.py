"""Shared helpers for the benchmark scenarios in bench/.

Every scenario is a plain script: `python bench/<name>.py [--quick | --smoke]`.
It measures, then writes bench/results/<name>.json with save_result(), and
bench/run_all.py turns those files into docs/benchmarks.md. The result file
is the whole contract between a scenario and the page:

    {"scenario": "probes", "title": "...", "mode": "full" | "quick" | "smoke",
     "command": "python bench/probes.py", "machine": machine_info(),
     "started": "2026-...Z", "duration_s": 123.4,
     "figures": [figure(...), ...],
     "sections": [{"title": "...", "text": "markdown"}, ...]}

A figure contains the values of its runs and its target. The page shows
their median and min-max, and whether the median meets the target.

Run `python bench/common.py serve --port 0` for a loopback HTTP target server
on its own (the scenarios start it themselves).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
PYZ = ROOT / "dist" / "oculus.pyz"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# The interpreter behind this one (a venv's python is a symlink or copy of it). The .pyz and the
# bare `python -c pass` baseline both run on it, so a pyenv shim or venv layer adds nothing.
BASE_PYTHON = getattr(sys, "_base_executable", None) or sys.executable
# requests and urllib honour http_proxy; loopback measurements must never go through a proxy.
_LOCAL_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- command line and results ----------------------------------------------------


def parse_args(description: str, argv=None, extra=None, quick_runs: int = 5) -> argparse.Namespace:
    """Parse the options every scenario takes: --quick, --smoke and --runs.

    Runs default to 5 for the full suite, `quick_runs` for --quick and 1 for --smoke.
    """
    parser = argparse.ArgumentParser(description=description)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="a version that takes about one minute")
    size.add_argument("--smoke", action="store_true", help="a tiny version that only checks the script works")
    parser.add_argument("--runs", type=int, default=None,
                        help=f"repetitions per figure (default 5; {quick_runs} for --quick, 1 for --smoke)")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    args.mode = "full"
    default_runs = 5
    if args.smoke:
        args.mode, default_runs = "smoke", 1
    elif args.quick:
        args.mode, default_runs = "quick", quick_runs
    if args.runs is None:
        args.runs = default_runs
    return args


def figure(key: str, title: str, values: list, unit: str, target: tuple | None = None,
           reference: str = "", note: str = "") -> dict:
    """Describe one measured figure.

    `target` is (operator, number) with operator "<=", ">=" or "<", compared
    with the median of `values`; None means the figure has no target.
    """
    values = [float(v) for v in values if v is not None]
    result = {"key": key, "title": title, "unit": unit, "values": values, "reference": reference, "note": note}
    if values:
        result.update(median=statistics.median(values), min=min(values), max=max(values))
    if target is not None:
        operator, limit = target
        result["target"] = {"operator": operator, "value": limit}
        if values:
            result["met"] = _compare(result["median"], operator, limit)
    return result


def _compare(value: float, operator: str, limit: float) -> bool:
    if operator == "<=":
        return value <= limit
    if operator == "<":
        return value < limit
    if operator == ">=":
        return value >= limit
    raise ValueError(f"unknown target operator {operator!r}; expected <=, < or >=")


def save_result(name: str, title: str, args: argparse.Namespace, started: float, figures: list,
                sections: list | None = None) -> Path:
    """Write bench/results/<name>.json and print each figure; return the file's path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", f"bench/{name}.py"] + ([f"--{args.mode}"] if args.mode != "full" else []))
    result = {
        "scenario": name,
        "title": title,
        "mode": args.mode,
        "command": command,
        "machine": machine_info(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "figures": figures,
        "sections": sections or [],
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    for item in figures:
        print(format_figure(item))
    print(f"wrote {path.relative_to(ROOT)} in {result['duration_s']:.0f}s")
    return path


def format_figure(item: dict) -> str:
    """Format a figure as one line: title, median, min-max and the target verdict."""
    if "median" not in item:
        return f"{item['title']}: no value"
    line = (f"{item['title']}: median {format_number(item['median'])} {item['unit']} "
            f"(min {format_number(item['min'])}, max {format_number(item['max'])}, {len(item['values'])} runs)")
    if "target" in item:
        target = item["target"]
        verdict = "met" if item.get("met") else "MISSED"
        line += f"; target {target['operator']} {format_number(target['value'])}: {verdict}"
    return line


def format_number(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3g}"


# -- machine -------------------------------------------------------------------


def machine_info() -> dict:
    """Cores, memory, CPU model, Python, duckdb and kernel of this machine."""
    info = {
        "cores": os.cpu_count(),
        "ram_gib": round(_meminfo_kib("MemTotal") / 1024 / 1024, 1),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "duckdb": _version("duckdb"),
        "kernel": platform.release(),
        "load_average": [round(load, 2) for load in os.getloadavg()],
    }
    return info


def _meminfo_kib(field: str) -> int:
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


# -- processes -------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process `pid` (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        # The command name in field 2 may contain spaces, so split after its closing bracket.
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_mib(pid: int) -> float:
    """Resident set size of process `pid`, in MiB."""
    with open(f"/proc/{pid}/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * PAGE_SIZE / 2**20


def rss_by_mapping(pid: int) -> dict[str, float]:
    """Split the RSS of process `pid` by what backs it, in MiB, from /proc/PID/smaps.

    Keys: "duckdb" (pages of DuckDB's shared library), "files" (every other
    mapped file: the interpreter, libraries, extension modules) and
    "anonymous" (heap and thread stacks: Python objects and DuckDB's buffers).
    """
    totals = {"duckdb": 0, "files": 0, "anonymous": 0}
    kind = "anonymous"
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):  # a mapping's header line
                path = fields[5] if len(fields) > 5 else ""
                if "_duckdb" in path:
                    kind = "duckdb"
                elif path.startswith("/"):
                    kind = "files"
                else:
                    kind = "anonymous"  # [heap], [stack], unnamed mappings
            elif fields[0] == "Rss:":
                totals[kind] += int(fields[1])
    return {key: kib / 1024 for key, kib in totals.items()}


class CpuMeter:
    """CPU use of a set of processes between two calls of read(), as a share of one core (1.0 = 100 %)."""

    def __init__(self, pids: list[int]):
        self.pids = list(pids)
        self._last = self._sample()

    def _sample(self) -> tuple[float, float]:
        return time.monotonic(), sum(cpu_seconds(pid) for pid in self.pids)

    def read(self) -> float:
        now, used = self._sample()
        before, used_before = self._last
        self._last = (now, used)
        return (used - used_before) / max(1e-9, now - before)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET a loopback URL without any proxy; return (status, body), or status 0 when the connection failed."""
    try:
        with _LOCAL_OPENER.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def wait_until(check, timeout: float, interval: float = 0.01) -> bool:
    """Call `check` until it returns true or `timeout` seconds pass; return whether it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> int | None:
    """Send SIGTERM to a process this script started, then SIGKILL after `timeout`; return its exit code."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            print(f"warning: PID {process.pid} did not exit within {timeout:g}s of SIGTERM; killing it",
                  file=sys.stderr)
            process.kill()
            process.wait(5)
    return process.returncode


# -- Oculus ----------------------------------------------------------------------


def oculus_command(use_pyz: bool) -> list[str]:
    """Return the command that starts Oculus: the built .pyz on the base interpreter, or the source tree."""
    if use_pyz:
        if not PYZ.exists():
            raise SystemExit(f"error: {PYZ.relative_to(ROOT)} is missing; run 'make dist' first")
        return [BASE_PYTHON, str(PYZ)]
    return [sys.executable, "-m", "oculus"]


class Oculus:
    """An Oculus process on a free loopback port with its own config and database in a temporary folder.

    Use as a context manager; `start_seconds` is the time from spawning the
    process to the first 200 from /readyz.
    """

    def __init__(self, config_text: str | None = None, use_pyz: bool = False, workdir: str | None = None,
                 env: dict | None = None, ready_timeout: float = 60.0):
        self._tempdir = None if workdir else tempfile.TemporaryDirectory(prefix="oculus-bench-")
        self.workdir = Path(workdir or self._tempdir.name)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.use_pyz = use_pyz
        self.config_text = config_text
        self.env = env or {}
        self.ready_timeout = ready_timeout
        self.process: subprocess.Popen | None = None
        self.start_seconds: float | None = None
        self.log_path = self.workdir / "oculus.log"

    def __enter__(self) -> Oculus:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self) -> None:
        command = oculus_command(self.use_pyz) + ["run", "--port", str(self.port),
                                                  "--db-path", str(self.workdir / "oculus.duckdb")]
        if self.config_text is not None:
            config_path = self.workdir / "oculus.yaml"
            config_path.write_text(self.config_text, encoding="utf-8")
            command += ["-c", str(config_path)]
        env = {**os.environ, "SHIV_ROOT": str(self.workdir / "shiv"), **self.env}
        env.pop("OCULUS_CONFIG", None)
        # Run as a service would: a shell or CI may set this, and then every start compiles every module
        # of the unpacked bundle again (about 300 ms more here) instead of reading the cached bytecode.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        log = open(self.log_path, "ab")
        started = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=ROOT if not self.use_pyz else self.workdir, env=env,
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        if not wait_until(lambda: self.ready() or self.process.poll() is not None, self.ready_timeout, 0.005):
            self.stop()
            raise RuntimeError(f"Oculus did not become ready within {self.ready_timeout:g}s; log: {self.log_path}")
        if self.process.poll() is not None:
            raise RuntimeError(f"Oculus exited with code {self.process.returncode} before it was ready:\n"
                               + self.log_path.read_text(errors="replace")[-3000:])
        self.start_seconds = time.perf_counter() - started

    def ready(self) -> bool:
        return http_get(self.url + "/readyz", timeout=1.0)[0] == 200

    def readiness(self) -> dict:
        status, body = http_get(self.url + "/readyz")
        return json.loads(body) if status in (200, 503) else {}

    def stop(self) -> int | None:
        if self.process is None:
            return None
        code = stop_process(self.process)
        if code not in (0, None):
            print(f"warning: Oculus exited with code {code}; log: {self.log_path}", file=sys.stderr)
        return code

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def rss_mib(self) -> float:
        return rss_mib(self.pid)


def http_targets_config(base_url: str, count: int, interval: float, timeout: float = 2.0,
                        runtime: dict | None = None) -> str:
    """Build a config with `count` HTTP probes of base_url/t/<n>, each every `interval` seconds."""
    lines = ["logging:", "  level: warning"]
    if runtime:
        lines.append("runtime:")
        lines += [f"  {key}: {value}" for key, value in runtime.items()]
    lines.append("collectors:")
    for index in range(count):
        lines += [
            "  - type: http",
            f"    name: t{index:05d}",
            f"    url: {base_url}/t/{index}",
            f"    interval: {interval:g}s",
            f"    timeout: {timeout:g}s",
        ]
    return "\n".join(lines) + "\n"


# -- loopback HTTP target server ---------------------------------------------------


class TargetServer:
    """A loopback HTTP server in its own process that returns 200 to every GET at once or after `delay_ms`.

    It runs on asyncio with a hand-written HTTP/1.1 parser (keep-alive, no
    pipelining), so one core serves thousands of requests per second, far
    above what the probe scenarios ask. Every path is a target; the server
    records when each path was requested, so late probes are measured at the
    receiving end whatever the prober (Oculus or blackbox_exporter).
    """

    def __init__(self, delay_ms: float = 0.0):
        self.delay_ms = delay_ms
        self.process: subprocess.Popen | None = None
        self.port: int | None = None

    def __enter__(self) -> TargetServer:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "serve", "--port", "0", "--delay-ms", str(self.delay_ms)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("listening "):
            stop_process(self.process, 5)
            raise RuntimeError(f"target server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def __exit__(self, *exc) -> None:
        stop_process(self.process, 5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def reset(self, interval: float) -> None:
        """Start a new measurement window for probes expected every `interval` seconds."""
        http_get(f"{self.url}/__reset?interval={interval}")

    def stats(self) -> dict:
        """Return requests, late probes and lateness percentiles since the last reset()."""
        status, body = http_get(f"{self.url}/__stats")
        if status != 200:
            raise RuntimeError(f"target server stats failed with status {status}")
        return json.loads(body)


_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n"
             b"Cache-Control: no-store\r\n\r\nok\n")
_HEAD_RESPONSE = _RESPONSE[:-3]
# A request head larger than this is rejected, so a broken client cannot grow the buffer without limit.
_MAX_HEAD = 16384


class _Recorder:
    """Arrival times per path and the lateness of each probe against the expected interval."""

    def __init__(self):
        self.last_arrival: dict[str, float] = {}
        self.reset(0.0)

    def reset(self, interval: float) -> None:
        self.interval = interval
        self.window_started = time.monotonic()
        self.requests = 0
        self.gaps = 0
        self.late = 0
        self.lateness: list[float] = []

    def record(self, path: str) -> None:
        now = time.monotonic()
        self.requests += 1
        previous = self.last_arrival.get(path)
        self.last_arrival[path] = now
        if previous is None or not self.interval:
            return
        lateness = (now - previous) - self.interval
        self.gaps += 1
        if lateness > 1.0:
            self.late += 1
        if len(self.lateness) < 2_000_000:
            self.lateness.append(lateness)

    def stats(self) -> dict:
        elapsed = time.monotonic() - self.window_started
        ordered = sorted(self.lateness)

        def percentile(share: float) -> float | None:
            return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else None

        return {"seconds": elapsed, "requests": self.requests, "rate": self.requests / max(elapsed, 1e-9),
                "gaps": self.gaps, "late": self.late, "late_share": self.late / self.gaps if self.gaps else None,
                "lateness_p50": percentile(0.5), "lateness_p99": percentile(0.99),
                "lateness_max": ordered[-1] if ordered else None, "paths": len(self.last_arrival)}


class _TargetProtocol(asyncio.Protocol):
    def __init__(self, recorder: _Recorder, delay: float):
        self.recorder = recorder
        self.delay = delay
        self.buffer = b""
        self.transport = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
            self._handle(head)
        if len(self.buffer) > _MAX_HEAD:
            self.transport.close()

    def _handle(self, head: bytes) -> None:
        request_line, _, headers = head.partition(b"\r\n")
        parts = request_line.split()
        if len(parts) != 3:
            self.transport.close()
            return
        method, target = parts[0], parts[1].decode("latin-1")
        path, _, query = target.partition("?")
        close = b"connection: close" in headers.lower()
        if path.startswith("/__"):
            self._control(path, query)
            return
        self.recorder.record(path)
        response = _HEAD_RESPONSE if method == b"HEAD" else _RESPONSE
        if self.delay:
            asyncio.get_running_loop().call_later(self.delay, self._send, response, close)
        else:
            self._send(response, close)

    def _send(self, response: bytes, close: bool) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(response)
        if close:
            self.transport.close()

    def _control(self, path: str, query: str) -> None:
        if path == "/__reset":
            interval = float(query.partition("interval=")[2] or 0)
            self.recorder.reset(interval)
            body = b"{}"
        else:
            body = json.dumps(self.recorder.stats()).encode()
        self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                             b"Connection: close\r\n\r\n%s" % (len(body), body))
        self.transport.close()


async def _serve(port: int, delay_ms: float) -> None:
    loop = asyncio.get_running_loop()
    recorder = _Recorder()
    server = await loop.create_server(lambda: _TargetProtocol(recorder, delay_ms / 1000), "127.0.0.1", port,
                                      backlog=4096, reuse_address=True)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()
    server.close()


def _main() -> int:
    parser = argparse.ArgumentParser(description="Loopback HTTP target server for the benchmarks.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve every path with 200 ok until SIGTERM")
    serve.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 picks a free one)")
    serve.add_argument("--delay-ms", type=float, default=0.0, help="wait this long before each response")
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.delay_ms))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
