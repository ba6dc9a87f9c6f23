"""airflow_image/constraints.txt is what lock.py writes, and the tests run with it.

lock.py itself asks pip's resolver, which needs the package index; these checks do
not: the file's form, that this environment is the tested one, and how pip's
installation report is read.
"""

from __future__ import annotations

import importlib.util
import sys
from importlib import metadata
from types import ModuleType

import pytest

from tests.support.stacks import PROJECT_ROOT

IMAGE = PROJECT_ROOT / "airflow_image"


def _lock() -> ModuleType:
    spec = importlib.util.spec_from_file_location("airflow_image_lock", IMAGE / "lock.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


lock = _lock()


def _constraints() -> dict[str, str]:
    lines = (IMAGE / "constraints.txt").read_text().splitlines()
    return dict(line.split("==") for line in lines if line and not line.startswith("#"))


def test_constraints_are_exactly_what_lock_writes() -> None:
    # Sorted, canonical names, every line name==version: not edited by hand.
    assert lock.render(_constraints()) == (IMAGE / "constraints.txt").read_text()


def test_the_tests_run_with_the_versions_the_image_installs() -> None:
    assert sys.version_info[:2] == lock.image_python()
    differ = {}
    for name, version in _constraints().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            differ[name] = (version, installed)
    assert not differ, f"(pinned, installed) differ, run make venv: {differ}"


def _report(*packages: tuple[str, str]) -> dict[str, object]:
    """A pip installation report (format version 1), with what lock.py reads of it."""
    return {
        "version": "1",
        "install": [{"metadata": {"name": name, "version": version}} for name, version in packages],
    }


def test_pins_are_read_from_pips_report_by_canonical_name() -> None:
    tested = {"flask-login": "0.6.3", "apache-airflow": "3.3.2"}
    report = _report(("Flask_Login", "0.6.3"), ("apache-airflow", "3.3.2"))
    assert lock.report_pins(report, tested) == tested


def test_a_package_no_test_ran_with_is_refused() -> None:
    with pytest.raises(lock.LockError, match=r"needs newdep==1\.0, .*run make venv"):
        lock.report_pins(_report(("newdep", "1.0")), {"apache-airflow": "3.3.2"})
