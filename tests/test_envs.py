"""envs/*.yaml (for conda users on clusters) pin the same versions as pyproject.toml."""
from __future__ import annotations

import re
import tomllib

import yaml

from conftest import REPO


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pyproject_pins() -> dict[str, str]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = meta["dependencies"] + [r for extra in meta.get("optional-dependencies", {}).values() for r in extra]
    pins = {}
    for r in reqs:
        name, _, version = r.partition("==")
        assert version, f"pyproject dependency {r!r} is not pinned with =="
        pins[_norm(name)] = version
    return pins


def env_pins(path) -> dict[str, str]:
    env = yaml.safe_load(path.read_text())
    pins = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else []
        for r in items:
            name, _, version = r.partition("==")
            pins[_norm(name)] = version
    return pins


def test_env_files_agree_with_pyproject():
    pins = pyproject_pins()
    files = sorted((REPO / "envs").glob("*.yaml"))
    assert files
    for f in files:
        for name, version in env_pins(f).items():
            assert name in pins, f"{f.name}: {name} is not a dependency in pyproject.toml"
            assert version == pins[name], f"{f.name}: {name}=={version} but pyproject pins {pins[name]}"


def test_main_env_has_every_pinned_dependency():
    missing = set(pyproject_pins()) - set(env_pins(REPO / "envs/balancehead.yaml"))
    assert not missing, f"envs/balancehead.yaml lacks {sorted(missing)}"
