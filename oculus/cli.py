"""Command line: ``oculus [run|check|version|rules test|notify test|backup|export]`` with the shared options.

Heavy libraries (duckdb, requests, apprise) are imported only inside the
commands that need them, so ``--help`` and ``version`` start fast.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from oculus import __version__

# Setting name for each option; the names match the Field names in oculus.config.schema.
OPTION_SETTINGS = {"bind": "bind", "port": "port", "db_path": "path", "log_level": "level", "log_format": "format"}


def _options_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("options (each also read from the OCULUS_* variable shown)")
    group.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS,
                       help="YAML config file [OCULUS_CONFIG]; without one, the embedded default config is used")
    group.add_argument("--bind", metavar="ADDRESS", default=argparse.SUPPRESS,
                       help="address the web server listens on [OCULUS_BIND] (default 127.0.0.1)")
    group.add_argument("--port", metavar="PORT", default=argparse.SUPPRESS,
                       help="TCP port of the web server [OCULUS_PORT] (default 8470)")
    group.add_argument("--db-path", metavar="FILE", default=argparse.SUPPRESS,
                       help="DuckDB database file [OCULUS_DB_PATH] (default ./oculus.duckdb)")
    group.add_argument("--log-level", metavar="LEVEL", default=argparse.SUPPRESS,
                       help="debug, info, warning or error [OCULUS_LOG_LEVEL] (default info)")
    group.add_argument("--log-format", metavar="FORMAT", default=argparse.SUPPRESS,
                       help="text, or json for one JSON object per line [OCULUS_LOG_FORMAT] (default text)")
    return parser


def build_parser() -> argparse.ArgumentParser:
    options = _options_parser()
    parser = argparse.ArgumentParser(
        prog="oculus", parents=[options],
        description="Monitor services and markets: probes, DuckDB storage and a live dashboard.",
        epilog="Without a command, 'run' is assumed. Precedence: option > OCULUS_* variable > config file > default.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", parents=[options], help="start collecting and serve the dashboard (default)")
    check = commands.add_parser("check", parents=[options],
                                help="validate a config file, print every problem, exit 0 or 2")
    check.add_argument("--json", action="store_true", help="print the result as JSON")
    commands.add_parser("version", help="print the version and exit")

    rules = commands.add_parser("rules", help="work with alert rules")
    rule_commands = rules.add_subparsers(dest="rules_command", metavar="SUBCOMMAND", required=True)
    test = rule_commands.add_parser(
        "test", parents=[options],
        help="replay stored history through the rules and print when each would have fired and resolved",
        description="Replay stored samples through the rule engine with a simulated clock, stepping by "
                    "alerting.interval, and print every firing and resolve. The database is only read; when a "
                    "running Oculus holds it, a temporary copy is replayed.")
    test.add_argument("--rule", metavar="NAME", action="append",
                      help="test only this rule (repeat the option for several); default every rule")
    test.add_argument("--since", metavar="DURATION", default="7d",
                      help="how far back from now to replay, such as 1h or 7d (default 7d)")
    test.add_argument("--json", action="store_true", help="print one JSON object per transition")

    notify = commands.add_parser("notify", help="work with notification channels")
    notify_commands = notify.add_subparsers(dest="notify_command", metavar="SUBCOMMAND", required=True)
    notify_test = notify_commands.add_parser(
        "test", parents=[options], help="send a test message through one configured channel and print the outcome",
        description="Send one test alert through CHANNEL, once and without retries, and print whether it was "
                    "delivered. Nothing is stored in the database. Exit 0 when delivered, 1 when not, 2 for an "
                    "invalid config or an unknown channel.")
    notify_test.add_argument("channel", metavar="CHANNEL", help="name of a channel under channels: in the config")
    notify_test.add_argument("--severity", choices=("info", "warn", "error", "critical"), default="info",
                             help="severity of the test alert; critical also shows the channel's mention "
                                  "(default info)")

    _add_transfer_commands(commands, options)
    return parser


def _add_transfer_commands(commands, options) -> None:
    remote = ("When a running Oculus has the database open, it makes the copy and sends it over its API, which "
              "needs the API token (server.api_token or OCULUS_API_TOKEN); otherwise the file is read directly.")
    backup = commands.add_parser(
        "backup", parents=[options], help="write a consistent copy of the database to DEST, also while Oculus runs",
        description="Write a copy of the whole database to DEST, a new DuckDB file that contains every sample "
                    f"committed before the backup started. {remote}")
    backup.add_argument("dest", metavar="DEST", help="DuckDB file to write; it must not exist yet")
    backup.add_argument("--url", metavar="URL",
                        help="address of the running Oculus, such as http://127.0.0.1:8470 (default: from "
                             "server.bind and server.port); given, the copy is always requested from it")

    export = commands.add_parser(
        "export", parents=[options], help="write stored history to a Parquet or CSV file",
        description=f"Write samples, or 1-minute or 1-hour rollups, to DEST in time order. {remote}")
    export.add_argument("dest", metavar="DEST", help="file to write; it must not exist yet")
    export.add_argument("--since", metavar="TIME",
                        help="start: a duration before now such as 7d, or an ISO 8601 time (default: everything)")
    export.add_argument("--until", metavar="TIME", help="end, exclusive, in the same forms (default: now)")
    export.add_argument("--symbol", metavar="SYMBOL", action="append",
                        help="export only this symbol; * matches any text, and the option repeats (default: all)")
    export.add_argument("--format", choices=("parquet", "csv"), default="parquet", help="file format (default parquet)")
    export.add_argument("--resolution", choices=("raw", "1m", "1h"), default="raw",
                        help="raw samples, or the 1-minute or 1-hour rollups (default raw)")
    export.add_argument("--url", metavar="URL", help="address of the running Oculus, as for backup")


def parse_and_finish_early(argv: list[str] | None = None) -> tuple[argparse.Namespace, int | None]:
    """Parse the command line and run the commands that need no third-party library.

    Return the parsed arguments and an exit status, which is None when the command still has to run.
    `--help` and usage errors exit here, inside argparse. oculus.pyz calls this before it unpacks the
    bundle, so these commands finish without waiting for shiv.
    """
    args = build_parser().parse_args(argv)
    if args.command == "version":
        print(f"oculus {__version__} (Python {sys.version.split()[0]})")
        return args, 0
    return args, None


def main(argv: list[str] | None = None) -> int:
    args, status = parse_and_finish_early(argv)
    if status is not None:
        return status
    command = args.command or "run"

    problem = _bundle_python_mismatch()
    if problem:
        print(problem, file=sys.stderr)
        return 1

    config_path = getattr(args, "config", None) or os.environ.get("OCULUS_CONFIG") or None
    flags = {setting: getattr(args, option) for option, setting in OPTION_SETTINGS.items() if hasattr(args, option)}
    if command == "check":
        return _check(config_path, flags, args.json)
    if command == "rules":
        return _rules_test(config_path, flags, args)
    if command == "notify":
        return _notify_test(config_path, flags, args)
    if command in ("backup", "export"):
        return _transfer(command, config_path, flags, args)
    return _run(config_path, flags)


def _load(config_path, flags):
    from oculus.config import ConfigError, load_config

    try:
        return load_config(config_path, flags=flags), []
    except ConfigError as exc:
        return None, exc.problems


def _check(config_path, flags, as_json: bool) -> int:
    config, problems = _load(config_path, flags)
    if as_json:
        print(json.dumps({"valid": config is not None, "problems": [str(p) for p in problems],
                          "warnings": config.warnings if config else []}))
    elif config is None:
        for problem in problems:
            print(problem, file=sys.stderr)
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
    else:
        for warning in config.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"{config.source}: valid, {len(config.collectors)} collector(s)")
    return 0 if config is not None else 2


def _rules_test(config_path, flags, args) -> int:
    from oculus.config import parse_duration

    try:
        since = parse_duration(args.since)
    except ValueError:
        print(f'--since: expected a duration such as 1h or 7d, got "{args.since}"', file=sys.stderr)
        return 2
    config, problems = _load(config_path, flags)
    if config is None:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 2
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)

    from oculus.rules.backtest import run_backtest

    return run_backtest(config, config.database.path, since, args.rule, args.json,
                        out=lambda line: print(line, flush=True), err=lambda line: print(line, file=sys.stderr))


def _notify_test(config_path, flags, args) -> int:
    config, problems = _load(config_path, flags)
    if config is None:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 2

    from oculus.logs import setup_logging
    from oculus.notify.sendtest import send_test

    setup_logging(config.logging.level, config.logging.format)
    return send_test(config, args.channel, args.severity, out=lambda line: print(line, flush=True),
                     err=lambda line: print(line, file=sys.stderr, flush=True))


def _run(config_path, flags) -> int:
    from oculus.logs import setup_logging

    config, problems = _load(config_path, flags)
    if config is None:
        for problem in problems:
            print(problem, file=sys.stderr)
        print("Oculus did not start: fix the config above (oculus check -c FILE lists every problem).", file=sys.stderr)
        return 2

    setup_logging(config.logging.level, config.logging.format)
    import logging

    for warning in config.warnings:
        logging.getLogger("oculus").warning("%s", warning)

    from oculus.runtime import run

    return run(config, config_path, flags)


def _transfer(command: str, config_path, flags, args) -> int:
    """Run backup or export on the database file, or through the running Oculus when it has the file locked."""
    config, problems = _load(config_path, flags)
    if config is None:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 2
    if os.path.exists(args.dest):
        print(f"{args.dest} exists already; choose a new file name or delete it first", file=sys.stderr)
        return 2

    from oculus.storage import transfer
    from oculus.web.client import ApiClientError

    try:
        if command == "backup":
            source = _backup(config, args)
            summary = transfer.describe_database(args.dest)
            counts = ", ".join(f"{count} {table}" for table, count in summary["rows"].items())
            detail = f"schema version {summary['schema_version']}, {counts}"
        else:
            source, rows = _export(config, args)
            detail = f"{rows} rows"
    except _InvalidOption as exc:
        print(exc, file=sys.stderr)
        return 2
    except (ApiClientError, transfer.TransferError, transfer.DatabaseOpenError) as exc:
        print(f"{command} failed: {exc}", file=sys.stderr)
        return 1
    size_mb = os.path.getsize(args.dest) / 1e6
    print(f"wrote {args.dest}: {size_mb:.1f} MB, {detail} (from {source})")
    return 0


def _backup(config, args) -> str:
    from oculus.storage import transfer
    from oculus.web.client import download

    def remote(url: str) -> None:
        download("POST", f"{url}/api/backup", _token(config), args.dest)

    source, _ = _on_file_or_instance(config, args, lambda: transfer.backup_file(config.database.path, args.dest),
                                     remote)
    return source


def _export(config, args) -> tuple[str, int]:
    from oculus.storage import transfer
    from oculus.web.client import download

    selection = transfer.ExportSelection(since=_cli_time("--since", args.since), until=_cli_time("--until", args.until),
                                         symbols=tuple(args.symbol or ()), resolution=args.resolution)
    params = {"format": args.format, "resolution": args.resolution, "symbol": args.symbol or []}
    params.update({name: value for name, value in (("since", args.since), ("until", args.until)) if value})

    def direct() -> int:
        return transfer.export_file(config.database.path, selection, args.format, args.dest)

    def remote(url: str) -> int:
        headers = download("GET", f"{url}/api/export", _token(config), args.dest, params)
        return int(headers.get("X-Oculus-Rows", 0))

    return _on_file_or_instance(config, args, direct, remote)


def _on_file_or_instance(config, args, direct, remote) -> tuple[str, object]:
    """Run `direct` on the database file, or `remote` with the running Oculus's URL when it has the file locked.

    With --url, with --port or --bind but no --db-path, or when the file is missing from this host, the
    running Oculus is asked at once. Return the file or the URL that was used, and what the function returned.
    """
    from oculus.storage import transfer
    from oculus.web.client import ApiClientError

    missing = None
    # An explicit address (--url, or --port/--bind without --db-path) names the running Oculus, so a
    # stray database file in the current directory must not be read instead.
    explicit_address = args.url or ((hasattr(args, "port") or hasattr(args, "bind")) and not hasattr(args, "db_path"))
    if not explicit_address:
        try:
            return config.database.path, direct()
        except transfer.DatabaseLockedError:
            pass  # the running Oculus has the file locked, so it writes the copy
        except transfer.DatabaseMissingError as exc:
            missing = exc
    url = (args.url or config.self_url).rstrip("/")
    try:
        return url, remote(url)
    except ApiClientError as exc:
        if missing is not None:
            raise ApiClientError(f"{missing} (pass it with --db-path), and {exc}") from None
        raise


class _InvalidOption(ValueError):
    """A command-line value is invalid; the message names the option."""


def _cli_time(option: str, text: str | None):
    from oculus.storage import utc_now
    from oculus.web.jsonapi import ApiError, parse_time

    try:
        return parse_time(option, text, utc_now())
    except ApiError as exc:
        raise _InvalidOption(exc.message) from None


def _token(config) -> str | None:
    from oculus.config import reveal

    return reveal(config.server.api_token)


def _bundle_python_mismatch() -> str | None:
    """Return an error when this .pyz bundles compiled wheels for another Python version or CPU architecture.

    build_zipapp.py writes oculus/_build.json; a source checkout has none.
    """
    info_path = os.path.join(os.path.dirname(__file__), "_build.json")
    try:
        with open(info_path, encoding="utf-8") as handle:
            info = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None
    built = tuple(info.get("python", ()))
    running = sys.version_info[:2]
    if built and tuple(built) != running:
        wanted = ".".join(map(str, built))
        return (
            f"error: this oculus.pyz bundles duckdb built for Python {wanted}, but it is running on "
            f"Python {running[0]}.{running[1]}. Run it with python{wanted} "
            f"(python{wanted} oculus.pyz), or build a matching file on this host with 'make dist'."
        )
    import platform  # only here: --help and version never need it

    built_machine, machine = info.get("platform"), platform.machine()
    if built_machine and built_machine != machine:
        return (f"error: this oculus.pyz bundles duckdb built for {built_machine} CPUs, but this host is "
                f"{machine}. Build oculus.pyz on a {machine} host with 'make dist'.")
    return None
