"""The lock files pin every dependency pyproject.toml declares, inside its declared range, and
agree with each other: `make install` and the image install exactly these versions."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pins(lock: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / lock).read_text().splitlines():
        requirement = line.split("#", 1)[0].split(";", 1)[0].strip()
        if requirement:
            name, version = requirement.split("==")
            pins[canonicalize_name(name)] = version
    return pins


RUNTIME = [Requirement(r) for r in PROJECT["dependencies"]]
DEV = [Requirement(r) for r in PROJECT["optional-dependencies"]["dev"]]


@pytest.mark.parametrize(
    ("lock", "requirements"), [("requirements.lock", RUNTIME), ("requirements-dev.lock", RUNTIME + DEV)]
)
def test_every_declared_dependency_is_pinned_within_its_range(lock, requirements):
    pins = _pins(lock)
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not in {lock}: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{lock} pins {name}=={pins[name]}, outside {requirement}: run `make lock`"
        )


def test_the_two_lock_files_pin_the_runtime_dependencies_alike():
    runtime, dev = _pins("requirements.lock"), _pins("requirements-dev.lock")
    assert {name: dev.get(name) for name in runtime} == runtime


def test_every_dependency_has_an_upper_bound():
    unbounded = [str(r) for r in RUNTIME if not any(s.operator in ("<", "<=", "==", "~=") for s in r.specifier)]
    assert unbounded == [], "bound these: a new major version must not arrive unreviewed"
