"""plugin collectors: loading by path, config-time errors, and runs through the real scheduler."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from oculus.collectors import registry
from oculus.collectors.plugin import import_plugin_file
from oculus.config import ConfigError, load_config
from oculus.runtime.scheduler import CollectorScheduler, CollectorState

DOCS = Path(__file__).resolve().parents[1] / "docs" / "collectors.md"


def example_plugin_source() -> str:
    """The example plugin of docs/collectors.md, so the documented file is the tested one."""
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(r"<!-- example-plugin -->\n```python\n(.*?)```", text, flags=re.DOTALL)
    assert match, "docs/collectors.md lost its example plugin block (<!-- example-plugin --> before ```python)"
    return match.group(1)


def write_plugin(tmp_path, source: str, filename: str = "my_plugin.py") -> str:
    path = tmp_path / filename
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return str(path)


def write_config(tmp_path, plugin_path: str, class_name: str, options=None, **settings) -> str:
    spec = {"type": "plugin", "name": "mine", "path": plugin_path, "class": class_name, **settings}
    if options is not None:
        spec["options"] = options
    path = tmp_path / "oculus.yaml"
    path.write_text(yaml.safe_dump({"collectors": [spec]}, sort_keys=False), encoding="utf-8")
    return str(path)


def load_spec(tmp_path, plugin_path: str, class_name: str, options=None, **settings):
    return load_config(write_config(tmp_path, plugin_path, class_name, options, **settings), env={}).collectors[0]


def config_error(tmp_path, plugin_path: str, class_name: str, options=None) -> str:
    with pytest.raises(ConfigError) as raised:
        load_spec(tmp_path, plugin_path, class_name, options)
    return str(raised.value)


@pytest.fixture
def scheduler():
    stored = []
    scheduler = CollectorScheduler(1, stored.extend)
    scheduler.stored = stored
    yield scheduler
    scheduler.pool.shutdown()


def run_once(scheduler, spec):
    collector = registry.create(spec)
    try:
        return {sample.symbol: sample for sample in scheduler.run_once(collector, CollectorState())}
    finally:
        collector.close()


GOOD = """
    from oculus.collectors.base import Collector, Reading

    class Counter(Collector):
        def symbols(self):
            return [f"custom.{self.name}.count"]

        def collect(self, deadline):
            return [Reading(f"custom.{self.name}.count", self.options["options"]["start"], tags={"unit": "items"})]
"""


# -- the documented example --------------------------------------------------


def test_example_plugin_runs(tmp_path, scheduler):
    path = write_plugin(tmp_path, example_plugin_source(), "disk_usage.py")
    spec = load_spec(tmp_path, path, "DiskUsageCollector", {"mounts": {"root": "/", "gone": str(tmp_path / "nope")}})
    samples = run_once(scheduler, spec)

    root = samples["custom.mine.root.used_pct"]
    assert root.success
    assert 0 <= root.value <= 100
    assert root.tags["unit"] == "%"
    assert root.category == "custom"
    assert samples["custom.mine.gone.used_pct"].success is False
    assert samples["custom.mine.gone.used_pct"].tags["error"].startswith("cannot read ")
    assert scheduler.stored == list(samples.values())


def test_example_plugin_checks_options(tmp_path):
    path = write_plugin(tmp_path, example_plugin_source(), "disk_usage.py")
    message = config_error(tmp_path, path, "DiskUsageCollector", {"mounts": {"Root.Disk": "/"}})

    assert "collectors[0].options.mounts: mount names must be lower case without dots, got 'Root.Disk'" in message


# -- running -----------------------------------------------------------------


def test_plugin_gets_its_options(tmp_path, scheduler):
    spec = load_spec(tmp_path, write_plugin(tmp_path, GOOD), "Counter", {"start": 41})
    samples = run_once(scheduler, spec)

    assert samples["custom.mine.count"].value == 41.0
    assert samples["custom.mine.count"].tags["unit"] == "items"


def test_plugin_exception_becomes_failed_samples(tmp_path, scheduler):
    source = GOOD.replace('return [Reading(f"custom.{self.name}.count"', 'raise RuntimeError("queue unreachable")\n'
                                                                          '            return [Reading(f"x"')
    spec = load_spec(tmp_path, write_plugin(tmp_path, source), "Counter", {"start": 1})
    samples = run_once(scheduler, spec)

    assert list(samples) == ["custom.mine.count"]
    assert samples["custom.mine.count"].success is False
    assert samples["custom.mine.count"].tags["error"] == "collector error: RuntimeError: queue unreachable"


def test_plugin_gets_deadline_from_timeout(tmp_path, scheduler):
    source = """
        import time
        from oculus.collectors.base import Collector, Reading

        class Budget(Collector):
            def symbols(self):
                return ["custom.mine.budget_s"]

            def collect(self, deadline):
                return [Reading("custom.mine.budget_s", deadline - time.monotonic())]
    """
    spec = load_spec(tmp_path, write_plugin(tmp_path, source), "Budget", timeout="2s")
    samples = run_once(scheduler, spec)

    assert 1.5 < samples["custom.mine.budget_s"].value <= 2.0


def test_plugin_without_base_class(tmp_path, scheduler):
    source = """
        from oculus.collectors.base import Reading

        class Plain:
            CATEGORY = "infra"

            def __init__(self, spec):
                self.name = spec.name
                self.level = spec.options["options"]["level"]

            def symbols(self):
                return [f"infra.{self.name}.level"]

            def collect(self, deadline):
                return [Reading(f"infra.{self.name}.level", self.level)]
    """
    spec = load_spec(tmp_path, write_plugin(tmp_path, source), "Plain", {"level": 3})
    samples = run_once(scheduler, spec)

    assert samples["infra.mine.level"].value == 3.0
    assert samples["infra.mine.level"].category == "infra"


def test_plugin_non_number_fails_that_reading(tmp_path, scheduler):
    source = """
        from oculus.collectors.base import Collector, Reading

        class Mixed(Collector):
            def symbols(self):
                return ["custom.mine.good", "custom.mine.text"]

            def collect(self, deadline):
                return [Reading("custom.mine.good", 1), Reading("custom.mine.text", "high")]
    """
    spec = load_spec(tmp_path, write_plugin(tmp_path, source), "Mixed")
    samples = run_once(scheduler, spec)

    assert samples["custom.mine.good"].success
    assert samples["custom.mine.text"].success is False
    assert samples["custom.mine.text"].tags["error"] == "Mixed returned a str value, expected a number"


@pytest.mark.parametrize("returned, message", [
    ('[Reading("Custom.Mine.X", 1)]', "Bad returned the symbol 'Custom.Mine.X'"),
    ('[Reading("crypto.price.btc_usd", 1)]', "Bad returned the symbol 'crypto.price.btc_usd'"),
    ('[{"symbol": "custom.mine.x"}]', "Bad.collect() must return Reading objects, got dict"),
    ("None", "Bad.collect() must return a list of Reading, got NoneType"),
])
def test_plugin_contract_violation_fails_run(tmp_path, scheduler, returned, message):
    source = f"""
        from oculus.collectors.base import Collector, Reading

        class Bad(Collector):
            def symbols(self):
                return ["custom.mine.x"]

            def collect(self, deadline):
                return {returned}
    """
    spec = load_spec(tmp_path, write_plugin(tmp_path, source), "Bad")
    samples = run_once(scheduler, spec)

    assert samples["custom.mine.x"].success is False
    assert message in samples["custom.mine.x"].tags["error"]


def test_plugin_broken_symbols_recorded_on_error_symbol(tmp_path, scheduler):
    source = """
        from oculus.collectors.base import Collector

        class NoSymbols(Collector):
            def symbols(self):
                raise KeyError("mounts")

            def collect(self, deadline):
                raise RuntimeError("down")
    """
    spec = load_spec(tmp_path, write_plugin(tmp_path, source), "NoSymbols")
    samples = run_once(scheduler, spec)

    assert samples["custom.plugin.mine.error"].tags["error"] == "collector error: RuntimeError: down"


def test_plugin_receives_reader(tmp_path):
    spec = load_spec(tmp_path, write_plugin(tmp_path, GOOD), "Counter", {"start": 1})
    collector = registry.create(spec)
    collector.reader = print

    assert collector._plugin.reader is print


# -- loading failures ----------------------------------------------------------


def test_missing_file_is_config_error(tmp_path):
    message = config_error(tmp_path, str(tmp_path / "absent.py"), "Counter")

    assert f"collectors[0].path: cannot read {tmp_path / 'absent.py'}: No such file or directory" in message


def test_relative_path_is_config_error(tmp_path):
    message = config_error(tmp_path, "plugins/mine.py", "Counter")

    assert 'collectors[0].path: expected an absolute path to a .py file, got "plugins/mine.py"' in message


def test_syntax_error_is_config_error(tmp_path):
    path = write_plugin(tmp_path, "class Counter:\n    def collect(self deadline):\n        pass\n")
    message = config_error(tmp_path, path, "Counter")

    assert f"collectors[0].path: cannot import {path}: syntax error on line 2" in message


def test_import_error_is_config_error(tmp_path):
    path = write_plugin(tmp_path, "import no_such_module_for_oculus\n")
    message = config_error(tmp_path, path, "Counter")

    assert "ModuleNotFoundError: No module named 'no_such_module_for_oculus'" in message


def test_missing_class_is_config_error(tmp_path):
    path = write_plugin(tmp_path, GOOD)
    message = config_error(tmp_path, path, "Countr")

    assert f'collectors[0].class: no class "Countr" in {path}; classes defined there: Counter' in message


def test_non_collector_class_is_config_error(tmp_path):
    path = write_plugin(tmp_path, "class Helper:\n    pass\n")
    message = config_error(tmp_path, path, "Helper")

    assert "must subclass oculus.collectors.base.Collector or define collect(deadline) and symbols()" in message


def test_error_names_config_line(tmp_path):
    path = write_plugin(tmp_path, GOOD)
    message = config_error(tmp_path, path, "Countr")

    assert re.search(r"oculus\.yaml:5: collectors\[0\]\.class:", message)


def test_file_gone_after_check_fails_samples(tmp_path, scheduler):
    path = write_plugin(tmp_path, GOOD)
    spec = load_spec(tmp_path, path, "Counter", {"start": 1})
    os.remove(path)
    samples = run_once(scheduler, spec)

    error = samples["custom.plugin.mine.error"]
    assert error.success is False
    assert error.tags["error"] == f"cannot read {path}: No such file or directory"


def test_init_error_fails_samples(tmp_path, scheduler):
    spec = load_spec(tmp_path, write_plugin(tmp_path, GOOD), "Counter")
    source = GOOD.replace("def symbols(self):", "def __init__(self, spec):\n"
                                                "            raise ValueError('no start given')\n\n"
                                                "        def symbols(self):")
    write_plugin(tmp_path, source)
    samples = run_once(scheduler, spec)

    assert samples["custom.plugin.mine.error"].tags["error"] == "Counter() failed: ValueError: no start given"


def test_unchanged_file_imported_once(tmp_path):
    path = write_plugin(tmp_path, GOOD)

    assert import_plugin_file(path) is import_plugin_file(path)


def test_edited_file_imported_again(tmp_path):
    path = write_plugin(tmp_path, GOOD)
    first = import_plugin_file(path)
    write_plugin(tmp_path, textwrap.dedent(GOOD) + "\nVERSION = 2\n")
    second = import_plugin_file(path)

    assert second is not first
    assert second.VERSION == 2
