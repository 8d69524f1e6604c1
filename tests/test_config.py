"""Config loading and validation, precedence, secrets, durations and the `oculus` CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from oculus import cli
from oculus.collectors import registry
from oculus.config import ConfigError, Secret, format_duration, load_config, parse_duration, reveal
from oculus.config.values import format_size, parse_size
from oculus.config.schema import COLLECTOR_COMMON, SECTIONS


KNOWN_TYPES = ", ".join(registry.known_types())

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
EXAMPLE = ROOT / "configs" / "config.example.yaml"
SECRET = "hunter2-must-not-print"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Remove OCULUS_* variables so the caller's shell cannot change a result."""
    for name in list(os.environ):
        if name.startswith("OCULUS_"):
            monkeypatch.delenv(name)


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def problems_of(path, env=None, flags=None) -> list[str]:
    """Return the problem lines of a config that must be invalid."""
    with pytest.raises(ConfigError) as caught:
        load_config(str(path), env=env or {}, flags=flags)
    return [str(problem) for problem in caught.value.problems]


def only_collector(path, env=None, flags=None):
    config = load_config(str(path), env=env or {}, flags=flags)
    assert len(config.collectors) == 1
    return config.collectors[0]


# -- one invalid file, one exact message --------------------------------------

DURATION_SYNTAX = "expected a duration like 500ms, 30s, 5m, 1h or 1m30s"
NAME_RULE = "expected a lower-case name of letters, digits, '_', '-' or ':' (no dots or spaces)"

INVALID_FILES = [
    ("invalid-yaml-syntax.yaml",
     "invalid-yaml-syntax.yaml:3: invalid YAML: mapping values are not allowed here"),
    ("invalid-yaml-two-documents.yaml",
     "invalid-yaml-two-documents.yaml:3: invalid YAML: "
     "expected a single document in the stream, but found another document"),
    ("invalid-not-a-mapping.yaml",
     "invalid-not-a-mapping.yaml:1: expected a mapping at the top level (server:, database:, collectors: ...)"),
    ("invalid-unknown-top-key.yaml",
     'invalid-unknown-top-key.yaml:3: colectors: unknown key; did you mean "collectors"?'),
    ("invalid-unknown-section-key.yaml",
     'invalid-unknown-section-key.yaml:3: server.prot: unknown key; did you mean "port"?'),
    ("invalid-unknown-collector-key.yaml",
     'invalid-unknown-collector-key.yaml:6: collectors[0].intervall: unknown key; did you mean "interval"?'),
    ("invalid-unknown-key-no-hint.yaml",
     "invalid-unknown-key-no-hint.yaml:2: server.listen_everywhere: unknown key; "
     "known keys: bind, port, threads, api_token"),
    ("invalid-section-not-a-mapping.yaml",
     "invalid-section-not-a-mapping.yaml:1: server: expected a mapping of settings, got int"),
    ("invalid-collectors-not-a-list.yaml",
     "invalid-collectors-not-a-list.yaml:1: collectors: "
     "expected a list of collectors, each starting with '- type: ...'"),
    ("invalid-duration-words.yaml",
     f'invalid-duration-words.yaml:6: collectors[0].interval: {DURATION_SYNTAX}, got "5 minutes"'),
    ("invalid-duration-bare-number.yaml",
     f"invalid-duration-bare-number.yaml:2: database.retention: {DURATION_SYNTAX}, got 30"),
    ("invalid-duration-too-short.yaml",
     'invalid-duration-too-short.yaml:2: runtime.shutdown_timeout: '
     'expected a duration of at least 1s, got "500ms"'),
    ("invalid-size-words.yaml",
     'invalid-size-words.yaml:2: database.memory_limit: expected a size like 256MiB, 512MB or 1GiB, got "lots"'),
    ("invalid-size-too-small.yaml",
     'invalid-size-too-small.yaml:2: database.memory_limit: expected a size of at least 16MiB, got "1MiB"'),
    ("invalid-collector-type.yaml",
     'invalid-collector-type.yaml:2: collectors[0].type: unknown collector type "dns"; known types: ' + KNOWN_TYPES),
    pytest.param(
        "invalid-collector-type-missing.yaml",
        'invalid-collector-type-missing.yaml:2: collectors[0]: '
        'missing required key "type": one of ' + KNOWN_TYPES,
    ),
    ("invalid-env-missing.yaml",
     "invalid-env-missing.yaml:6: collectors[0].headers.Authorization: environment variable "
     "OCULUS_TEST_UNSET_TOKEN is not set; export it or write ${OCULUS_TEST_UNSET_TOKEN:-default}"),
    pytest.param(
        "invalid-env-missing-url.yaml",
        "invalid-env-missing-url.yaml:4: collectors[0].url: environment variable "
        "OCULUS_TEST_UNSET_URL is not set; export it or write ${OCULUS_TEST_UNSET_URL:-default}",
    ),
    ("invalid-missing-required.yaml",
     'invalid-missing-required.yaml:2: collectors[0]: missing required key "url": URL to request (http:// or https://).'),
    ("invalid-duplicate-key.yaml",
     "invalid-duplicate-key.yaml:4: server.port: "
     "duplicate key; the later value would silently replace the earlier one"),
    ("invalid-duplicate-collector.yaml",
     'invalid-duplicate-collector.yaml:7: collectors[1].name: duplicate collector "ssh" of type tcp; '
     "collectors[0] has the same name"),
    ("invalid-server-port.yaml",
     "invalid-server-port.yaml:2: server.port: expected a number <= 65535, got 70000"),
    ("invalid-tcp-port.yaml",
     'invalid-tcp-port.yaml:5: collectors[0].port: expected a whole number, got "ssh"'),
    ("invalid-name-upper-case.yaml",
     f'invalid-name-upper-case.yaml:3: collectors[0].name: {NAME_RULE}, got "SSH"'),
    ("invalid-name-dots.yaml",
     f'invalid-name-dots.yaml:3: collectors[0].name: {NAME_RULE}, got "api.example.com"'),
    ("invalid-expect-status.yaml",
     "invalid-expect-status.yaml:5: collectors[0].expect_status: "
     "expected status codes like 200, [200, 204] or \"200-299\", got \"2xx\""),
    ("invalid-body-match-and-regex.yaml",
     "invalid-body-match-and-regex.yaml:6: collectors[0].body_regex: set either body_match or body_regex, not both"),
    ("invalid-log-level.yaml",
     'invalid-log-level.yaml:2: logging.level: expected one of debug, info, warning, error, got "verbose"'),
]

SEVERAL_PROBLEMS = [
    'several-problems.yaml:2: server.prot: unknown key; did you mean "port"?',
    f'several-problems.yaml:4: database.retention: {DURATION_SYNTAX}, got "7 days"',
    'several-problems.yaml:6: collectors[0].type: unknown collector type "dns"; known types: ' + KNOWN_TYPES,
    f'several-problems.yaml:9: collectors[1].name: {NAME_RULE}, got "SSH"',
    "several-problems.yaml:11: collectors[1].port: expected a number <= 65535, got 70000",
]


def _table_file(case) -> str:
    return case.values[0] if hasattr(case, "values") else case[0]


@pytest.mark.parametrize("name, expected", INVALID_FILES)
def test_invalid_file_message(name, expected, monkeypatch):
    monkeypatch.chdir(DATA)
    assert problems_of(name) == [expected]


def test_invalid_files_all_in_table():
    on_disk = sorted(path.name for path in DATA.glob("invalid-*.yaml"))
    assert on_disk == sorted(_table_file(case) for case in INVALID_FILES)


def test_missing_file_message(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert problems_of("no-such-file.yaml") == [
        "no-such-file.yaml: file not found; pass an existing file with -c, or omit -c to use the embedded default"
    ]


def test_several_problems_all_reported(monkeypatch):
    monkeypatch.chdir(DATA)
    assert problems_of("several-problems.yaml") == SEVERAL_PROBLEMS


def test_duplicate_key_in_collector(tmp_path):
    path = write_config(tmp_path, "collectors:\n  - type: tcp\n    name: a\n    host: 127.0.0.1\n"
                                  "    port: 22\n    port: 23\n")
    assert problems_of(path) == [
        f"{path}:6: collectors[0].port: duplicate key; the later value would silently replace the earlier one"
    ]


def test_same_name_different_types_allowed(tmp_path):
    path = write_config(tmp_path, "collectors:\n  - type: tcp\n    name: api\n    host: 127.0.0.1\n    port: 443\n"
                                  "  - type: ping\n    name: api\n    host: 127.0.0.1\n")
    config = load_config(path, env={})
    assert [spec.key for spec in config.collectors] == ["tcp:api", "ping:api"]


def test_merge_key_override_allowed(tmp_path):
    path = write_config(tmp_path, "collectors:\n"
                                  "  - &base\n    type: tcp\n    name: first\n    host: 127.0.0.1\n    port: 22\n"
                                  "  - <<: *base\n    name: second\n")
    config = load_config(path, env={})
    assert [spec.name for spec in config.collectors] == ["first", "second"]


# -- http option checks that the table does not cover --------------------------


def test_expect_status_quoted_code(tmp_path):
    path = write_config(tmp_path, "collectors:\n  - type: http\n    name: api\n    url: http://127.0.0.1:1/\n"
                                  '    expect_status: "200"\n')
    assert only_collector(path).options["expect_status"] == [(200, 200)]


def test_expect_status_empty_list(tmp_path):
    path = write_config(tmp_path, "collectors:\n  - type: http\n    name: api\n    url: http://127.0.0.1:1/\n"
                                  "    expect_status: []\n")
    with pytest.raises(ConfigError):
        load_config(path, env={})


def test_expect_status_mixed_list(tmp_path):
    path = write_config(tmp_path, "collectors:\n  - type: http\n    name: api\n    url: http://127.0.0.1:1/\n"
                                  '    expect_status: [204, "300-399"]\n')
    assert only_collector(path).options["expect_status"] == [(204, 204), (300, 399)]


# -- oculus check -------------------------------------------------------------


def test_check_prints_every_problem(monkeypatch, capsys):
    monkeypatch.chdir(DATA)
    status = cli.main(["check", "-c", "several-problems.yaml"])
    lines = capsys.readouterr().err.splitlines()
    assert status == 2
    assert lines == SEVERAL_PROBLEMS + ["5 problem(s) found"]


def test_check_valid_file_exits_0(capsys):
    status = cli.main(["check", "-c", str(EXAMPLE)])
    output = capsys.readouterr()
    assert status == 0
    assert output.out == f"{EXAMPLE}: valid, {len(_example()['collectors'])} collector(s)\n"
    assert output.err == ""


def test_check_json_invalid(monkeypatch, capsys):
    monkeypatch.chdir(DATA)
    status = cli.main(["check", "--json", "-c", "several-problems.yaml"])
    result = json.loads(capsys.readouterr().out)
    assert status == 2
    assert result == {"valid": False, "problems": SEVERAL_PROBLEMS, "warnings": []}


def test_check_json_valid(capsys):
    status = cli.main(["check", "--json", "-c", str(EXAMPLE)])
    result = json.loads(capsys.readouterr().out)
    assert status == 0
    assert result == {"valid": True, "problems": [], "warnings": []}


def test_check_warns_on_unknown_symbol(tmp_path, capsys):
    path = write_config(tmp_path, "rules:\n  - name: api\n    condition: net.http.api.status != 200\n")
    status = cli.main(["check", "--json", "-c", path])
    result = json.loads(capsys.readouterr().out)
    assert status == 0
    assert result["warnings"] == [f'{path}:3: rules[0].condition: rule "api": no configured collector emits '
                                  'symbol "net.http.api.status"; the rule reports no data until one does']


def test_check_reads_oculus_config(monkeypatch, capsys):
    monkeypatch.setenv("OCULUS_CONFIG", str(DATA / "invalid-server-port.yaml"))
    assert cli.main(["check"]) == 2


def test_check_option_beats_oculus_config(monkeypatch, capsys):
    monkeypatch.setenv("OCULUS_CONFIG", str(DATA / "invalid-server-port.yaml"))
    assert cli.main(["check", "-c", str(EXAMPLE)]) == 0


def test_check_missing_file_exits_2(tmp_path, capsys):
    status = cli.main(["check", "-c", str(tmp_path / "absent.yaml")])
    assert status == 2
    assert "file not found" in capsys.readouterr().err


# -- precedence: flag > OCULUS_* variable > file > default --------------------

# section, key, variable, default, (file text, value), (variable text, value), (flag text, value)
PRECEDENCE = [
    ("server", "bind", "OCULUS_BIND", "127.0.0.1",
     ("10.0.0.1", "10.0.0.1"), ("10.0.0.2", "10.0.0.2"), ("10.0.0.3", "10.0.0.3")),
    ("server", "port", "OCULUS_PORT", 8470, ("9001", 9001), ("9002", 9002), ("9003", 9003)),
    ("database", "path", "OCULUS_DB_PATH", "oculus.duckdb",
     ("file.duckdb", "file.duckdb"), ("env.duckdb", "env.duckdb"), ("flag.duckdb", "flag.duckdb")),
    ("logging", "level", "OCULUS_LOG_LEVEL", "info", ("warning", "warning"), ("error", "error"), ("DEBUG", "debug")),
    ("logging", "format", "OCULUS_LOG_FORMAT", "text", ("json", "json"), ("text", "text"), ("json", "json")),
]
PRECEDENCE_IDS = [f"{row[0]}.{row[1]}" for row in PRECEDENCE]


def _setting(path, section, key, env=None, flags=None):
    config = load_config(path, env=env or {}, flags=flags)
    return getattr(getattr(config, section), key)


@pytest.mark.parametrize("section, key, variable, default, in_file, in_env, in_flag", PRECEDENCE, ids=PRECEDENCE_IDS)
def test_setting_default(tmp_path, section, key, variable, default, in_file, in_env, in_flag):
    path = write_config(tmp_path, "")
    assert _setting(path, section, key) == default


@pytest.mark.parametrize("section, key, variable, default, in_file, in_env, in_flag", PRECEDENCE, ids=PRECEDENCE_IDS)
def test_setting_file_over_default(tmp_path, section, key, variable, default, in_file, in_env, in_flag):
    path = write_config(tmp_path, f"{section}:\n  {key}: {in_file[0]}\n")
    assert _setting(path, section, key) == in_file[1]


@pytest.mark.parametrize("section, key, variable, default, in_file, in_env, in_flag", PRECEDENCE, ids=PRECEDENCE_IDS)
def test_setting_env_over_file(tmp_path, section, key, variable, default, in_file, in_env, in_flag):
    path = write_config(tmp_path, f"{section}:\n  {key}: {in_file[0]}\n")
    assert _setting(path, section, key, env={variable: in_env[0]}) == in_env[1]


@pytest.mark.parametrize("section, key, variable, default, in_file, in_env, in_flag", PRECEDENCE, ids=PRECEDENCE_IDS)
def test_setting_flag_over_env(tmp_path, section, key, variable, default, in_file, in_env, in_flag):
    path = write_config(tmp_path, f"{section}:\n  {key}: {in_file[0]}\n")
    assert _setting(path, section, key, env={variable: in_env[0]}, flags={key: in_flag[0]}) == in_flag[1]


@pytest.mark.parametrize("section, key, variable, default, in_file, in_env, in_flag", PRECEDENCE, ids=PRECEDENCE_IDS)
def test_setting_empty_env_ignored(tmp_path, section, key, variable, default, in_file, in_env, in_flag):
    path = write_config(tmp_path, f"{section}:\n  {key}: {in_file[0]}\n")
    assert _setting(path, section, key, env={variable: ""}) == in_file[1]


# Settings read from a variable but with no command-line option, because a flag would show in `ps`.
ENV_ONLY = [("server", "api_token", "OCULUS_API_TOKEN")]


def test_precedence_table_covers_schema():
    declared = sorted((s.name, f.name, f.env) for s in SECTIONS for f in s.fields if f.flag or f.env)
    assert declared == sorted([row[:3] for row in PRECEDENCE] + ENV_ONLY)


def test_api_token_default_none(tmp_path):
    assert _setting(write_config(tmp_path, ""), "server", "api_token") is None


@pytest.mark.parametrize("text", ["server:\n  api_token: null\n", "server:\n  api_token: ''\n"])
def test_api_token_empty_is_none(tmp_path, text):
    assert _setting(write_config(tmp_path, text), "server", "api_token") is None


def test_api_token_file_value_secret(tmp_path):
    token = _setting(write_config(tmp_path, "server:\n  api_token: from-file\n"), "server", "api_token")
    assert isinstance(token, Secret)
    assert token.reveal() == "from-file"
    assert str(token) == "<secret>"


def test_api_token_env_over_file(tmp_path):
    path = write_config(tmp_path, "server:\n  api_token: from-file\n")
    token = _setting(path, "server", "api_token", env={"OCULUS_API_TOKEN": "from-env"})
    assert token.reveal() == "from-env"


FLAGGED_FIELDS = [pytest.param(f, id=f.flag) for s in SECTIONS for f in s.fields if f.flag]


@pytest.mark.parametrize("field", FLAGGED_FIELDS)
def test_cli_option_sets_field(field):
    args = cli.build_parser().parse_args(["check", field.flag, "x"])
    flags = {setting: getattr(args, option) for option, setting in cli.OPTION_SETTINGS.items() if hasattr(args, option)}
    assert flags == {field.name: "x"}


# variable, bad value, expected problem
BAD_VARIABLES = [
    ("OCULUS_BIND", "  ", 'environment variable OCULUS_BIND: bind: expected a non-empty string, got "  "'),
    ("OCULUS_PORT", "http", 'environment variable OCULUS_PORT: port: expected a whole number, got "http"'),
    ("OCULUS_PORT", "70000", "environment variable OCULUS_PORT: port: expected a number <= 65535, got \"70000\""),
    ("OCULUS_DB_PATH", " ", 'environment variable OCULUS_DB_PATH: path: expected a non-empty string, got " "'),
    ("OCULUS_LOG_LEVEL", "loud",
     'environment variable OCULUS_LOG_LEVEL: level: expected one of debug, info, warning, error, got "loud"'),
    ("OCULUS_LOG_FORMAT", "xml",
     'environment variable OCULUS_LOG_FORMAT: format: expected one of text, json, got "xml"'),
]


@pytest.mark.parametrize("variable, value, expected", BAD_VARIABLES)
def test_bad_env_names_variable(tmp_path, variable, value, expected):
    path = write_config(tmp_path, "")
    assert problems_of(path, env={variable: value}) == [expected]


@pytest.mark.parametrize("option, value, expected", [
    ("--port", "http", 'command-line option --port: port: expected a whole number, got "http"'),
    ("--log-level", "loud",
     'command-line option --log-level: level: expected one of debug, info, warning, error, got "loud"'),
    ("--log-format", "xml", 'command-line option --log-format: format: expected one of text, json, got "xml"'),
    ("--db-path", " ", 'command-line option --db-path: path: expected a non-empty string, got " "'),
])
def test_bad_flag_names_option(tmp_path, capsys, option, value, expected):
    path = write_config(tmp_path, "")
    status = cli.main(["check", "-c", path, option, value])
    assert status == 2
    assert expected in capsys.readouterr().err.splitlines()


def test_flag_hides_bad_env(monkeypatch, capsys):
    monkeypatch.setenv("OCULUS_PORT", "http")
    assert cli.main(["check", "--port", "9000"]) == 0


def test_env_hides_bad_file_value(tmp_path):
    path = write_config(tmp_path, "server:\n  port: http\n")
    assert _setting(path, "server", "port", env={"OCULUS_PORT": "9000"}) == 9000


# -- ${ENV} references and secrets --------------------------------------------

HEADER_CONFIG = """\
collectors:
  - type: http
    name: api
    url: http://127.0.0.1:1/health
    headers:
      Authorization: Bearer ${API_TOKEN}
"""


def test_env_value_is_secret(tmp_path):
    path = write_config(tmp_path, HEADER_CONFIG)
    header = only_collector(path, env={"API_TOKEN": SECRET}).options["headers"]["Authorization"]
    assert isinstance(header, Secret)
    assert str(header) == "<secret>"
    assert repr(header) == "<secret>"
    assert reveal(header) == f"Bearer {SECRET}"


def test_public_dict_masks_header(tmp_path):
    path = write_config(tmp_path, HEADER_CONFIG)
    public = only_collector(path, env={"API_TOKEN": SECRET}).public_dict()
    assert public["headers"] == {"Authorization": "<secret>"}
    assert SECRET not in repr(public)


def test_public_dict_masks_url(tmp_path):
    path = write_config(tmp_path, "collectors:\n  - type: http\n    name: api\n"
                                  "    url: http://127.0.0.1:1/?key=${API_KEY}\n")
    public = only_collector(path, env={"API_KEY": SECRET}).public_dict()
    assert public["url"] == "<secret>"


def test_public_dict_masks_tag(tmp_path):
    path = write_config(tmp_path, "collectors:\n  - type: tcp\n    name: db\n    host: 127.0.0.1\n    port: 5432\n"
                                  "    tags:\n      owner: ${OWNER}\n")
    public = only_collector(path, env={"OWNER": SECRET}).public_dict()
    assert public["tags"] == {"owner": "<secret>"}


def test_public_dict_masks_body_regex(tmp_path):
    path = write_config(tmp_path, "collectors:\n  - type: http\n    name: api\n    url: http://127.0.0.1:1/\n"
                                  "    body_regex: ${PATTERN}\n")
    public = only_collector(path, env={"PATTERN": SECRET}).public_dict()
    assert SECRET not in repr(public)


def test_builtin_url_not_secret(tmp_path):
    path = write_config(tmp_path, "collectors:\n  - type: http\n    name: self\n    url: ${OCULUS_URL}/healthz\n")
    url = only_collector(path).options["url"]
    assert url == "http://127.0.0.1:8470/healthz"


def test_env_default_when_unset(tmp_path):
    path = write_config(tmp_path, "collectors:\n  - type: http\n    name: api\n"
                                  "    url: ${API_URL:-http://127.0.0.1:1/}\n")
    assert reveal(only_collector(path).options["url"]) == "http://127.0.0.1:1/"


def test_env_default_when_empty(tmp_path):
    path = write_config(tmp_path, "collectors:\n  - type: http\n    name: api\n"
                                  "    url: ${API_URL:-http://127.0.0.1:1/}\n")
    assert reveal(only_collector(path, env={"API_URL": ""}).options["url"]) == "http://127.0.0.1:1/"


@pytest.mark.parametrize("written, expected", [
    ("cost $$5", "cost $5"),
    ("$${HOME}", "${HOME}"),
    ("$$$$", "$$"),
])
def test_dollar_escape(tmp_path, written, expected):
    path = write_config(tmp_path, "collectors:\n  - type: http\n    name: api\n    url: http://127.0.0.1:1/\n"
                                  f"    body_match: '{written}'\n")
    assert only_collector(path, env={"HOME": SECRET}).options["body_match"] == expected


def test_malformed_reference_rejected(tmp_path):
    path = write_config(tmp_path, "collectors:\n  - type: http\n    name: api\n"
                                  "    url: http://127.0.0.1:1/${not-valid}\n")
    with pytest.raises(ConfigError):
        load_config(path, env={})


def test_empty_env_host_rejected(tmp_path):
    path = write_config(tmp_path, "collectors:\n  - type: tcp\n    name: db\n    host: ${DB_HOST}\n    port: 5432\n")
    with pytest.raises(ConfigError):
        load_config(path, env={"DB_HOST": ""})


def test_env_host_reaches_tcp_probe(tmp_path, open_port):
    path = write_config(tmp_path, "collectors:\n  - type: tcp\n    name: db\n    host: ${DB_HOST}\n"
                                  f"    port: {open_port}\n")
    collector = registry.create(only_collector(path, env={"DB_HOST": "127.0.0.1"}))
    try:
        readings = collector.collect(time.monotonic() + 2.0)
    finally:
        collector.close()
    assert [reading.success for reading in readings] == [True]


def test_env_db_path_usable(tmp_path):
    path = write_config(tmp_path, "database:\n  path: ${STATE_DIRECTORY}/oculus.duckdb\n")
    config = load_config(path, env={"STATE_DIRECTORY": "/srv/oculus"})
    assert os.path.abspath(config.database.path) == "/srv/oculus/oculus.duckdb"


def test_env_bind_usable(tmp_path):
    path = write_config(tmp_path, "server:\n  bind: ${BIND_ADDRESS}\n")
    config = load_config(path, env={"BIND_ADDRESS": "10.0.0.5"})
    assert config.self_url == "http://10.0.0.5:8470"


@pytest.mark.parametrize("command", [["check"], ["check", "--json"]])
def test_check_output_hides_secret(tmp_path, monkeypatch, capsys, command):
    path = write_config(tmp_path, HEADER_CONFIG)
    monkeypatch.setenv("API_TOKEN", SECRET)
    status = cli.main([*command, "-c", path])
    output = capsys.readouterr()
    assert status == 0
    assert SECRET not in output.out + output.err


LEAKS_SECRET = ()

# one collector setting, written as ${SECRET_VALUE}, that cannot parse the secret
SECRET_IN_ERROR = [
    pytest.param("type: http\n    url: ${SECRET_VALUE}", id="http-url"),
    pytest.param("type: tcp\n    host: 127.0.0.1\n    port: 22\n    tags:\n      a:\n        - ${SECRET_VALUE}",
                 id="tcp-tags"),
    pytest.param("type: http\n    url: http://127.0.0.1:1/\n    body_regex: ${SECRET_VALUE}(", id="http-body_regex"),
    pytest.param("type: tcp\n    host: 127.0.0.1\n    port: ${SECRET_VALUE}", id="tcp-port", marks=LEAKS_SECRET),
    pytest.param("type: ping\n    host: 127.0.0.1\n    interval: ${SECRET_VALUE}", id="ping-interval",
                 marks=LEAKS_SECRET),
    pytest.param("type: http\n    url: http://127.0.0.1:1/\n    method: ${SECRET_VALUE}", id="http-method",
                 marks=LEAKS_SECRET),
    pytest.param("type: http\n    url: http://127.0.0.1:1/\n    expect_status: ${SECRET_VALUE}",
                 id="http-expect_status", marks=LEAKS_SECRET),
    pytest.param("type: http\n    url: http://127.0.0.1:1/\n    verify_tls: ${SECRET_VALUE}", id="http-verify_tls",
                 marks=LEAKS_SECRET),
]


@pytest.mark.parametrize("settings", SECRET_IN_ERROR)
def test_error_hides_secret(tmp_path, settings):
    path = write_config(tmp_path, f"collectors:\n  - name: probe\n    {settings}\n")
    problems = problems_of(path, env={"SECRET_VALUE": SECRET})
    assert SECRET not in "\n".join(problems)


def test_section_error_hides_secret(tmp_path):
    path = write_config(tmp_path, "server:\n  threads: ${SECRET_VALUE}\n")
    problems = problems_of(path, env={"SECRET_VALUE": SECRET})
    assert SECRET not in "\n".join(problems)


# -- durations ----------------------------------------------------------------

DURATIONS = [
    ("500ms", 0.5),
    ("30s", 30.0),
    ("5m", 300.0),
    ("1h", 3600.0),
    ("1m30s", 90.0),
    ("7d", 604800.0),
]


@pytest.mark.parametrize("text, seconds", DURATIONS + [("1.5s", 1.5), (" 30s ", 30.0), ("0s", 0.0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text, seconds", DURATIONS)
def test_format_duration(text, seconds):
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["", "30", "5 minutes", "1h-5m", "ms", "30 s", "-5s", "5w", None, 30])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration_round_trip():
    assert parse_duration(format_duration(1.5)) == 1.5


# -- sizes --------------------------------------------------------------------


@pytest.mark.parametrize("text, size", [("256MiB", 256 * 2**20), ("512MB", 512 * 10**6), ("1GiB", 2**30),
                                        ("1.5 GB", 1_500_000_000), ("64kib", 64 * 1024), ("100B", 100)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "256", "lots", "256M", "-1MiB", "1 PiB", None, 256])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize("size, text", [(256 * 2**20, "256MiB"), (2**30, "1GiB"), (1536, "1536B"),
                                        (3 * 2**10, "3KiB"), (10**6, "1000000B")])
def test_format_size(size, text):
    assert format_size(size) == text


# -- the example config documents every setting -------------------------------


def _example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))


SECTION_FIELDS = [pytest.param(s.name, f, id=f"{s.name}.{f.name}") for s in SECTIONS for f in s.fields]
COLLECTOR_FIELDS = [
    pytest.param(kind, f.name, id=f"{kind}.{f.name}")
    for kind in registry.known_types()
    for f in COLLECTOR_COMMON + tuple(registry.collector_class(kind).FIELDS)
]


@pytest.mark.parametrize("section, field", SECTION_FIELDS)
def test_example_sets_section_field(section, field):
    assert field.name in _example()[section]


@pytest.mark.parametrize("section, field", SECTION_FIELDS)
def test_example_section_value_is_default(section, field):
    config = load_config(str(EXAMPLE), env={})
    assert getattr(getattr(config, section), field.name) == field.default


@pytest.mark.parametrize("kind, name", COLLECTOR_FIELDS)
def test_example_documents_collector_field(kind, name):
    """The key appears under a collector of this type, set or commented out.

    A whole block may be commented out ("  # - type: plugin"), for a type whose
    example cannot load as written, such as a plugin file that does not exist.
    """
    text = EXAMPLE.read_text(encoding="utf-8")
    blocks = re.split(r"^  (?:# )?- ", text, flags=re.MULTILINE)
    of_kind = [block for block in blocks if block.startswith(f"type: {kind}\n")]
    assert of_kind, f"no collector block of type {kind}"
    assert any(re.search(rf"^\s*#?\s*{name}:", block, flags=re.MULTILINE) for block in of_kind)


# The smallest valid options of each type, to ask a collector for its symbols.
# Symbols named after assets or fields (crypto.price.btc_usd, custom.<name>.stations)
# must appear in the example as written, so these options use the example's assets.
MINIMAL_OPTIONS = {
    "http": "url: http://127.0.0.1:1/",
    "tcp": "host: 127.0.0.1\n    port: 1",
    "ping": "host: 127.0.0.1",
    "crypto": "assets: [btc]",
    "fear_greed": "",
    "mvrv": "assets: [btc]",
    "altseason": "window: 30d",
    "moving_average": "assets: [btc]",
    "stock": "symbols: [AAPL]",
    "polymarket": "slug: fed-rate-cut-by-june-30-2026",
    "json_api": "url: http://127.0.0.1:1/\n    values: {stations: $.total_results}",
}
# Optional settings that add symbols of another family.
MORE_SYMBOLS_OPTIONS = [
    ("mvrv", "zscore: true"),
    ("altseason", "assets: [eth]"),
    ("stock", "indices: {spx: \"^GSPC\"}"),
]
PLUGIN_SKIP = pytest.mark.skip(reason="a plugin's symbols come from the user's class, not from Oculus")
SYMBOL_CASES = [
    pytest.param(kind, MINIMAL_OPTIONS.get(kind, ""), id=kind, marks=PLUGIN_SKIP if kind == "plugin" else ())
    for kind in registry.known_types()
] + [pytest.param(kind, options, id=f"{kind}-{options.split(':')[0]}") for kind, options in MORE_SYMBOLS_OPTIONS]


def test_minimal_options_cover_types():
    assert sorted(MINIMAL_OPTIONS) == sorted(kind for kind in registry.known_types() if kind != "plugin")


@pytest.mark.parametrize("kind, options", SYMBOL_CASES)
def test_example_documents_symbols(tmp_path, kind, options):
    lines = ["collectors:", f"  - type: {kind}", "    name: zz"] + ([f"    {options}"] if options else [])
    path = write_config(tmp_path, "\n".join(lines) + "\n")
    collector = registry.create(only_collector(path))
    try:
        symbols = [symbol.replace(".zz.", ".<name>.") for symbol in collector.symbols()]
    finally:
        collector.close()
    text = EXAMPLE.read_text(encoding="utf-8")
    assert symbols != []
    assert [symbol for symbol in symbols if symbol not in text] == []


def test_example_documents_rules_and_channels():
    text = EXAMPLE.read_text(encoding="utf-8")
    assert re.search(r"^# rules:", text, flags=re.MULTILINE)
    assert re.search(r"^# channels:", text, flags=re.MULTILINE)


# -- the CLI starts without heavy imports -------------------------------------

HEAVY_MODULES = {"duckdb", "requests", "apprise"}


@pytest.mark.parametrize("argv", [["--help"], ["version"]])
def test_cli_skips_heavy_imports(argv):
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "oculus", *argv],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    assert result.returncode == 0
    assert "oculus.cli" in imported
    assert sorted(name for name in imported if name.split(".")[0] in HEAVY_MODULES) == []


def test_version_output(capsys):
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out.startswith("oculus ")


# -- the embedded default config ----------------------------------------------


def test_default_config_valid():
    config = load_config(None, env={})
    assert config.collectors != []


def test_check_default_exits_0(capsys):
    assert cli.main(["check"]) == 0


def _self_targets(env=None, flags=None) -> tuple:
    """Return the URL of the default config's http collector and the port of its tcp collector."""
    config = load_config(None, env=env or {}, flags=flags)
    by_type = {spec.type: spec for spec in config.collectors}
    return reveal(by_type["http"].options["url"]), by_type["tcp"].options["port"]


@pytest.mark.parametrize("env, flags, url, port", [
    ({}, {}, "http://127.0.0.1:8470/healthz", 8470),
    ({}, {"port": "9123"}, "http://127.0.0.1:9123/healthz", 9123),
    ({}, {"bind": "0.0.0.0"}, "http://127.0.0.1:8470/healthz", 8470),
    ({}, {"bind": "::"}, "http://[::1]:8470/healthz", 8470),
    ({}, {"bind": "10.1.2.3", "port": "9124"}, "http://10.1.2.3:9124/healthz", 9124),
    ({"OCULUS_PORT": "9125"}, {}, "http://127.0.0.1:9125/healthz", 9125),
    ({"OCULUS_PORT": "9125"}, {"port": "9126"}, "http://127.0.0.1:9126/healthz", 9126),
    ({"OCULUS_BIND": "::1"}, {}, "http://[::1]:8470/healthz", 8470),
], ids=["default", "port-flag", "any-ipv4", "any-ipv6", "bind-flag", "port-env", "flag-over-env", "bind-env"])
def test_default_self_url(env, flags, url, port):
    assert _self_targets(env, flags) == (url, port)


def test_default_port_0_picks_free_port():
    config = load_config(None, env={}, flags={"port": "0"})
    tcp = next(spec for spec in config.collectors if spec.type == "tcp")

    assert config.server.port > 0
    assert tcp.options["port"] == config.server.port


def test_self_url_from_env_refs(tmp_path):
    path = write_config(tmp_path, "server:\n  bind: ${BIND_ADDRESS}\n  port: ${WEB_PORT}\n"
                                  "collectors:\n  - type: http\n    name: self\n    url: ${OCULUS_URL}/healthz\n")
    spec = only_collector(path, env={"BIND_ADDRESS": "127.0.0.2", "WEB_PORT": "9001"})
    assert reveal(spec.options["url"]) == "http://127.0.0.2:9001/healthz"
