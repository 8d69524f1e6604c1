"""Run every benchmark scenario and write the benchmark page from their results.

    python bench/run_all.py            full suite, rewrites docs/benchmarks.md (about an hour)
    python bench/run_all.py --quick    about a minute per scenario, writes bench/results/benchmarks-quick.md
    python bench/run_all.py --smoke    tiny sizes, only proves the scripts work (bench/results/benchmarks-smoke.md)
    python bench/run_all.py --page-only    rewrite the page from the result files already there
    python bench/run_all.py --page-only --latest --page FILE
                                       a page from each scenario's newest result, whatever its size

Each scenario writes bench/results/<name>.json (see bench/common.py); the page
is built from those files alone, so a scenario that another team owns
(rules.py, dashboard.py, rollups.py) appears as soon as it writes its result file.
"""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

BENCH = Path(__file__).resolve().parent
# Order matters only for reading the page: the cheap scenarios run first.
SCENARIOS = ("startup", "footprint", "ingest", "probes", "sidebyside", "dashboard", "rollups", "rules")
# Maximum time one scenario may run before it is stopped, per mode, in seconds.
SCENARIO_TIMEOUT = {"smoke": 240, "quick": 600, "full": 3600}
PAGE = common.ROOT / "docs" / "benchmarks.md"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="run each scenario's --quick version")
    size.add_argument("--smoke", action="store_true", help="run each scenario's --smoke version")
    parser.add_argument("--page-only", action="store_true", help="rewrite the page without running anything")
    parser.add_argument("--latest", action="store_true",
                        help="put each scenario's newest result on the page, whatever size it was run at")
    parser.add_argument("--page", type=Path, default=None,
                        help="write the page to this file (default docs/benchmarks.md for the full suite, "
                             "bench/results/benchmarks-<mode>.md otherwise)")
    parser.add_argument("--only", nargs="+", choices=SCENARIOS, metavar="NAME",
                        help=f"run only these scenarios ({', '.join(SCENARIOS)}); the page still shows all results")
    args = parser.parse_args(argv)
    args.mode = "full"
    if args.smoke:
        args.mode = "smoke"
    elif args.quick:
        args.mode = "quick"
    return args


def run_scenario(name: str, mode: str) -> str | None:
    """Run bench/<name>.py in `mode`; return None on success, else why it failed."""
    script = BENCH / f"{name}.py"
    result_path = common.RESULTS_DIR / f"{name}.json"
    if result_path.exists():
        # A failed run must not leave an older result on the page as if it were new.
        result_path.replace(result_path.with_suffix(".previous.json"))
    command = [sys.executable, str(script)] + _mode_flags(script, mode)
    print(f"== {name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    try:
        completed = subprocess.run(command, cwd=common.ROOT, timeout=SCENARIO_TIMEOUT[mode])
    except subprocess.TimeoutExpired:
        return f"stopped after {SCENARIO_TIMEOUT[mode]} s"
    print(f"== {name}: exit {completed.returncode} after {time.monotonic() - started:.0f} s", flush=True)
    if completed.returncode != 0:
        return f"exited with code {completed.returncode}"
    if not result_path.exists():
        return f"exited 0 but wrote no {result_path.relative_to(common.ROOT)}"
    return None


def _mode_flags(script: Path, mode: str) -> list[str]:
    """Return the size option for `mode`; a script without --smoke gets its --quick size instead."""
    if mode == "full":
        return []
    if mode == "smoke":
        usage = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True).stdout
        if "--smoke" not in usage:
            return ["--quick"]
    return [f"--{mode}"]


def load_results(mode: str | None) -> dict[str, dict]:
    """Read every scenario's result file that was written in `mode`, or in any mode when `mode` is None."""
    results = {}
    for name in SCENARIOS:
        path = common.RESULTS_DIR / f"{name}.json"
        if path.exists():
            result = json.loads(path.read_text(encoding="utf-8"))
            if mode is None or result.get("mode") == mode:
                results[name] = result
    return results


# -- page ------------------------------------------------------------------------


def render_page(results: dict[str, dict], failures: dict[str, str], total_seconds: float | None) -> str:
    lines = ["# Benchmarks", ""]
    lines += [
        "Generated by `make bench` (`python bench/run_all.py`) from the result files in `bench/results/`; "
        "edit the scripts in `bench/`, not this page. Every figure is measured on loopback only. "
        "A figure's runs are repetitions of its measurement; the page gives their median and min–max, and a "
        "target is met when the median meets it.",
        "",
    ]
    reduced = [f"{name} (`--{result['mode']}`)" for name, result in results.items() if result["mode"] != "full"]
    if reduced:
        lines += [f"**Run at reduced size: {', '.join(reduced)}.** These runs are shorter and repeat less "
                  "than the targets are about; only the full suite's figures count.", ""]
    if total_seconds is not None:
        lines += [f"The whole run took {total_seconds / 60:.0f} minutes.", ""]

    machines = {json.dumps(_machine_key(r["machine"])): r["machine"] for r in results.values()}
    lines += ["## Machine", ""]
    for machine in machines.values():
        lines.append(f"- {_machine_line(machine)}")
    lines.append("")

    lines += _summary(results)
    for name in SCENARIOS:
        if name in results:
            lines += _scenario_section(results[name])
        elif name in failures:
            lines += [f"## {name}", "", f"`python bench/{name}.py` failed: {failures[name]}. No figures.", ""]
        elif not (BENCH / f"{name}.py").exists():
            lines += [f"## {name}", "", f"`bench/{name}.py` does not exist yet. No figures.", ""]
    return "\n".join(lines).rstrip() + "\n"


def _machine_key(machine: dict) -> dict:
    return {key: machine.get(key) for key in ("cores", "ram_gib", "cpu", "python", "duckdb", "kernel")}


def _machine_line(machine: dict) -> str:
    return (f"{machine.get('cores')} cores ({machine.get('cpu')}), {machine.get('ram_gib')} GiB RAM, "
            f"Python {machine.get('python')}, duckdb {machine.get('duckdb')}, Linux {machine.get('kernel')}")


def _summary(results: dict[str, dict]) -> list[str]:
    lines = ["## Targets", "", "| figure | target | median | min–max | runs | met | reference | command |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in SCENARIOS:
        result = results.get(name)
        if result is None:
            continue
        for item in result["figures"]:
            if "target" not in item:
                continue
            lines.append(f"| {item['title']} | {_target(item)} | {_value(item, 'median')} | {_range(item)} | "
                         f"{len(item['values'])} | {_verdict(item)} | {item.get('reference') or ''} | "
                         f"`{result['command']}` |")
    return lines + [""]


def _scenario_section(result: dict) -> list[str]:
    machine = result["machine"]
    lines = [f"## {result['title']}", ""] + _method(result["scenario"]) + [
             f"Command: `{result['command']}`, started {result['started']}, took {result['duration_s']:.0f} s. "
             f"Machine: {_machine_line(machine)}; load average at the end "
             f"{', '.join(str(load) for load in machine.get('load_average', []))}.", "",
             "| figure | median | min–max | runs | target | met | note |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for item in result["figures"]:
        p95 = f"p95 {common.format_number(item['p95'])} {item['unit']}" if "p95" in item else ""
        note = "; ".join(part for part in (p95, item.get("reference"), item.get("note")) if part)
        lines.append(f"| {item['title']} | {_value(item, 'median')} | {_range(item)} | {len(item['values'])} | "
                     f"{_target(item)} | {_verdict(item)} | {note} |")
    lines.append("")
    for section in result.get("sections", []):
        lines += [f"### {section['title']}", "", section["text"].rstrip(), ""]
    return lines


def _method(name: str) -> list[str]:
    """Return the paragraphs of bench/<name>.py's docstring after its summary line, as the method text.

    The script's own description of what it measures stays next to the figures
    without a second copy to keep up to date. Usage lines are left out.
    """
    script = BENCH / f"{name}.py"
    if not script.exists():
        return []
    docstring = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
    paragraphs = [" ".join(line.strip() for line in block.splitlines())
                  for block in docstring.split("\n\n")[1:]]
    return [text + "\n" for text in paragraphs if text and not text.startswith(("Usage:", "python "))]


def _value(item: dict, key: str) -> str:
    return f"{common.format_number(item[key])} {item['unit']}" if key in item else "no value"


def _range(item: dict) -> str:
    if "min" not in item:
        return ""
    return f"{common.format_number(item['min'])}–{common.format_number(item['max'])}"


def _target(item: dict) -> str:
    target = item.get("target")
    if not target:
        return ""
    symbol = {"<=": "≤", ">=": "≥", "<": "<"}.get(target["operator"], target["operator"])
    return f"{symbol} {common.format_number(target['value'])} {item['unit']}"


def _verdict(item: dict) -> str:
    if "target" not in item:
        return ""
    if "met" not in item:
        return "no value"
    if item["met"]:
        return "yes"
    limit, median = item["target"]["value"], item["median"]
    miss = f"by {abs(median - limit) / limit:.0%}" if limit else ""
    return f"**no** {miss}".rstrip()


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    failures = {}
    if not args.page_only:
        for name in args.only or SCENARIOS:
            if not (BENCH / f"{name}.py").exists():
                print(f"== {name}: bench/{name}.py does not exist yet; skipped", flush=True)
                continue
            problem = run_scenario(name, args.mode)
            if problem:
                failures[name] = problem
                print(f"== {name}: FAILED, {problem}", file=sys.stderr, flush=True)

    results = load_results(None if args.latest else args.mode)
    total = None if args.page_only or args.only else time.monotonic() - started
    page = args.page
    if page is None:
        page = PAGE if args.mode == "full" else common.RESULTS_DIR / f"benchmarks-{args.mode}.md"
    page = page.resolve()
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(render_page(results, failures, total), encoding="utf-8")
    print(f"wrote {page.relative_to(common.ROOT)}"
          + (f" in {total / 60:.1f} min" if total is not None else ""))
    if failures:
        print(f"failed scenarios: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
