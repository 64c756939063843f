"""envs/*.yaml (for conda users on clusters) pin the same versions as pyproject.toml."""
from __future__ import annotations

import json
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


DESCRIBE_CONDA = """
import json, os, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import DeploymentMethod, DeploymentSettings, OutputSettings, ResourceSettings
root = Path(sys.argv[1])
with SnakemakeApi(OutputSettings()) as api:
    wf = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=root / "Snakefile", workdir=root,
                      deployment_settings=DeploymentSettings(deployment_method={DeploymentMethod.CONDA}))
    rules = {r.name: {"shell": r.shellcmd, "conda": r.conda_env, "dir": str(Path(r.snakefile).parent)}
             for r in wf._workflow.rules if r.conda_env}
print("@@" + json.dumps({"rules": rules, "root": os.environ.get("BALANCEHEAD_ROOT")}))
"""


def test_snakemake_conda_jobs_run_the_env_python_and_its_post_deploy_installs_the_package(tmp_path):
    """`snakemake --sdm conda`: every stage rule runs `python -m balancehead` in envs/balancehead.yaml's
    environment, and the post-deploy script Snakemake runs in it (found, copied and invoked the way
    Snakemake does) installs this repository, editable — not a path relative to the copied env file."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    from balancehead import pipeline

    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, "-c", DESCRIBE_CONDA, str(REPO)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    desc = json.loads(proc.stdout.split("@@", 1)[1])
    assert {s.name for s in pipeline.STAGES} <= set(desc["rules"])
    env_files = {(Path(r["dir"]) / r["conda"]).resolve() for r in desc["rules"].values()}
    assert env_files == {REPO / "envs" / "balancehead.yaml"}
    for name, rule in desc["rules"].items():
        assert rule["shell"].split()[:4] == ["python", "-m", "balancehead", "run"], (name, rule["shell"])
    assert Path(desc["root"]) == REPO

    # Snakemake: post-deploy file = env file with .yaml -> .post-deploy.sh, copied next to the env,
    # run with the interpreter of its shebang inside the activated env, from Snakemake's working directory.
    deploy = REPO / "envs" / "balancehead.post-deploy.sh"
    copy = tmp_path / ".snakemake" / "conda" / "0123abcd.post-deploy.sh"
    copy.parent.mkdir(parents=True)
    shutil.copy(deploy, copy)
    interpreter = deploy.read_text().splitlines()[0].removeprefix("#!").split()
    fake_env = tmp_path / "env" / "bin"
    fake_env.mkdir(parents=True)
    (fake_env / "python").write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path / "argv"}\n')
    (fake_env / "python").chmod(0o755)
    run_env = dict(os.environ, PATH=f"{fake_env}{os.pathsep}{os.environ['PATH']}", BALANCEHEAD_ROOT=desc["root"])
    subprocess.run(interpreter + [str(copy)], cwd=tmp_path, env=run_env, check=True, timeout=60)
    argv = (tmp_path / "argv").read_text().split("\n")[:-1]
    assert argv[:3] == ["-m", "pip", "install"] and "--no-deps" in argv
    assert argv[-2:] == ["--editable", str(REPO)]

    run_env.pop("BALANCEHEAD_ROOT")           # not run by our Snakefile: refuse rather than install "."
    assert subprocess.run(interpreter + [str(copy)], cwd=tmp_path, env=run_env, capture_output=True,
                          timeout=60).returncode != 0
