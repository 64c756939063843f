"""`balancehead sweep`: BalanceHead Table 1 as one command, a DVC experiment sweep over conditioning modes.

The arms live in ONE place, params.yaml `sweep.arms` (arm name -> dotted overrides, as `dvc exp run -S`);
a new Table 1 row is one line there. The sweep:

1. reproduces, in the workspace, every stage the arms share: the ancestors of `sweep.target` whose
   declared params no arm overrides (ingest ... pack_dataset, build_ops). DVC skips what is up to date;
2. stages (`git add`) dvc.lock and the shared stages' small uncached metrics/plots, then queues one
   experiment per arm (`dvc exp run --queue -n <sweep id>-<arm> -S ... -S sweep.id=<id> <target>`). The
   experiments run in temporary copies that share the repository's DVC cache; carrying the workspace's
   dvc.lock and those files, they find the shared stages up to date and check their outputs out of the
   cache: the packed dataset is built once and every arm trains on the very same bytes (table.json
   `one_dataset` checks the hash each arm's dvc.lock records);
3. runs the queue (`dvc exp run --run-all -j sweep.jobs`, following the logs);
4. collects (`collect`, also `balancehead sweep --collect ID`): `dvc exp show --json` gives each arm's
   metrics (results/metrics.json), git gives its bias curve (results/fid_by_yaw.tsv, committed with the
   experiment); writes results/sweep/table.md + table.json, results/sweep/bias_curves.png (every arm's
   FID per yaw bin overlaid, bootstrap error bars where present) and results/sweep/index.html (both, as a
   page). The report stage shows the same section when the table exists.

MLflow: the sweep opens one run (`sweep <id>`, see tracking.py); each arm's pipeline parent, identified by
`sweep.id`, nests under it, and `collect` copies each arm's final metrics onto that arm's run, so the UI
compares the arms side by side.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import fileio, pipeline

SWEEP_DIR = "results/sweep"
METRICS_FILE = "results/metrics.json"
BIAS_FILE = "results/fid_by_yaw.tsv"
# Table 1's columns first (BalanceHead §5.1), then what else the metric suite reports, when present.
TABLE_METRICS = ("fid_view", "fid_random", "fid_front", "fid_back", "fid_panohead_all", "fid_panohead_front", "kid_random",
                 "mknnd", "id_consistency")


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: dict
    exp_name: str


def new_sweep_id() -> str:
    return time.strftime("t1_%Y%m%d_%H%M%S", time.gmtime())


def plan(params, sweep_id: str) -> list[Arm]:
    if not params.sweep.arms:
        raise ValueError("params.yaml sweep.arms is empty: nothing to sweep")
    return [Arm(name, dict(overrides), f"{sweep_id}-{name}") for name, overrides in params.sweep.arms.items()]


def _value(v) -> str:
    """A params value as `dvc exp run -S` (Hydra's override grammar) reads it back."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return v if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_./-]*", v) and v not in ("null", "true", "false") \
        else "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def set_args(arm: Arm, sweep_id: str) -> list[str]:
    args = []
    for key, value in arm.overrides.items():
        args += ["-S", f"{key}={_value(value)}"]
    return args + ["-S", f"sweep.id={sweep_id}"]


def _overlaps(declared: str, key: str) -> bool:
    return declared == key or key.startswith(declared + ".") or declared.startswith(key + ".")


def ancestors(name: str) -> set[str]:
    """`name` and every stage it (transitively) reads from."""
    result, todo = set(), [name]
    while todo:
        s = todo.pop()
        if s not in result:
            result.add(s)
            todo += pipeline.upstream(s)
    return result


def shared_stages(params) -> list[str]:
    """Stages the target needs that no arm changes (in pipeline order): built once, before the arms."""
    keys = {k for overrides in params.sweep.arms.values() for k in overrides} | {"sweep"}
    touched = {s.name for s in pipeline.STAGES if any(_overlaps(p, k) for p in s.params for k in keys)}
    changed = pipeline.downstream_closure(touched)
    needed = ancestors(params.sweep.target)
    return [s.name for s in pipeline.STAGES if s.name in needed and s.name not in changed]


def git_side_files(stages: list[str]) -> list[str]:
    """What an arm's experiment must carry from the workspace to see `stages` as up to date: dvc.lock and
    their uncached metrics and plots (git-side files); their cached outputs come from the shared cache.
    `dvc exp run --queue` snapshots tracked files only, so the sweep stages these (`git add`) before queueing
    (the README's advice anyway: commit dvc.lock and results/*.json, *.tsv). `-C` cannot be used: DVC copies
    into the experiment's checkout without creating parent folders, and results/ is not there."""
    return ["dvc.lock"] + [f for name in stages for f in (*pipeline.stage(name).metric_files,
                                                          *pipeline.stage(name).plot_files)]


def queue_command(dvc: str, arm: Arm, sweep_id: str, target: str) -> list[str]:
    return [dvc, "exp", "run", "--queue", "-n", arm.exp_name, *set_args(arm, sweep_id), target]


def tool_env() -> dict:
    """The stages' commands (`balancehead run ...` in dvc.yaml) must resolve to this installation, also in
    the queue's worker (it inherits this environment) when the venv is not activated."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _run(cmd: list[str], root: Path, echo: Callable[[str], None], capture: bool = False) -> str:
    echo("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, cwd=root, text=True, capture_output=capture, env=tool_env())
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(cmd)}"
                           + (f"\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}" if capture else ""))
    return proc.stdout or ""


def _busy_queue(dvc: str, root: Path) -> list[str]:
    out = subprocess.run([dvc, "queue", "status"], cwd=root, capture_output=True, text=True, env=tool_env()).stdout
    return [line for line in out.splitlines() if re.search(r"\s(Queued|Running)\s*$", line)]


def run_sweep(root: Path, params, sweep_id: str, dvc: str = "dvc", echo: Callable[[str], None] = print) -> dict:
    """Steps 1-4 of the module docstring; returns the collected table (see `collect`)."""
    from . import tracking

    arms = plan(params, sweep_id)
    busy = _busy_queue(dvc, root)
    if busy:
        raise RuntimeError("the DVC experiment queue is not empty (`dvc queue status`); the sweep would run those "
                           "too. Let them finish or remove them (`dvc queue remove --queued`):\n" + "\n".join(busy))
    shared = shared_stages(params)
    echo(f"sweep {sweep_id}: {len(arms)} arms ({', '.join(a.name for a in arms)}); shared stages built once: "
         f"{', '.join(shared)}")
    _run([dvc, "repro", *shared], root, echo)
    _run(["git", "add", "--", *[f for f in git_side_files(shared) if (root / f).exists()]], root, echo)
    opened = tracking.sweep_run(params.mlflow, tracking.main_checkout(root), sweep_id,
                                {f"arm.{a.name}": json.dumps(a.overrides) for a in arms})
    if opened is not None:
        echo(f"MLflow: run 'sweep {sweep_id}' ({opened[1]}); each arm's runs nest under it")
    for arm in arms:
        _run(queue_command(dvc, arm, sweep_id, params.sweep.target), root, echo)
    try:
        _run([dvc, "exp", "run", "--run-all", "-j", str(params.sweep.jobs)], root, echo)
    finally:
        table = collect(root, params, sweep_id, echo=echo)
    return table


# ---------------------------------------------------------------------------------------------- collect
def _experiments(dvc: str, root: Path) -> dict[str, dict]:
    """{experiment name: {"rev", "params", "metrics"}} over all commits (`dvc exp show --json -A`)."""
    out = subprocess.run([dvc, "exp", "show", "--json", "-A", "--no-fetch"], cwd=root, capture_output=True,
                         text=True, env=tool_env())
    if out.returncode != 0:
        raise RuntimeError(f"dvc exp show failed:\n{out.stderr[-3000:]}")
    found = {}
    for baseline in json.loads(out.stdout or "[]"):
        for group in baseline.get("experiments") or []:
            for rev in group.get("revs") or []:
                data = rev.get("data") or {}
                if rev.get("name"):
                    found[rev["name"]] = {
                        "rev": rev["rev"],
                        "params": ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {},
                        "metrics": ((data.get("metrics") or {}).get(METRICS_FILE) or {}).get("data")}
    return found


def _git_show(root: Path, rev: str, path: str) -> str | None:
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def dataset_md5(lock_text: str | None) -> str | None:
    """The packed dataset's DVC hash recorded in a dvc.lock (what an arm trained on)."""
    import yaml

    lock = yaml.safe_load(lock_text) if lock_text else None
    outs = (((lock or {}).get("stages") or {}).get("pack_dataset") or {}).get("outs") or []
    dataset = pipeline.stage("pack_dataset").outputs["dataset"]
    return next((o.get("md5") for o in outs if o.get("path") == dataset), None)


def _tsv(text: str) -> tuple[list[str], list[list[str]]]:
    lines = [l.split("\t") for l in text.splitlines() if l.strip()]
    return lines[0], lines[1:]


def _get(d: dict, dotted: str):
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def collect(root: Path, params, sweep_id: str, dvc: str = "dvc", echo: Callable[[str], None] = print) -> dict:
    """Tabulate the sweep's experiments; write results/sweep/{table.json, table.md, bias_curves.png}; copy
    each arm's metrics onto its MLflow run. Arms without a finished experiment are listed as missing."""
    from . import tracking
    from .evaluation import report_html as R
    from .stages.report import sweep_page

    exps = _experiments(dvc, root)
    rows, curves = [], {}
    for arm in plan(params, sweep_id):
        exp = exps.get(arm.exp_name)
        row = {"arm": arm.name, "experiment": arm.exp_name, "overrides": arm.overrides,
               "status": "done" if exp and exp["metrics"] else "missing", "rev": exp["rev"] if exp else None,
               "metrics": exp["metrics"] if exp else None}
        if exp:
            row["feature_extractor"] = _get(exp["params"], "evaluate.feature_extractor")
            row["train"] = {k: _get(exp["params"], f"train.{k}") for k in
                            ("model.preset", "model.output_resolution", "total_kimg", "batch")}
            row["dataset_md5"] = dataset_md5(_git_show(root, exp["rev"], "dvc.lock"))
            text = _git_show(root, exp["rev"], BIAS_FILE)
            if text:
                curves[arm.name] = _tsv(text)
        rows.append(row)
    present = [r for r in rows if r["metrics"]]
    columns = [m for m in TABLE_METRICS if any(isinstance(r["metrics"].get(m), (int, float)) for r in present)]
    md5s = {r.get("dataset_md5") for r in present}
    table = {"sweep_id": sweep_id, "columns": columns, "rows": rows,
             "one_dataset": len(md5s) == 1 and None not in md5s,     # every arm trained on the same packed bytes
             "bias_curves": {name: {"header": h, "rows": rs} for name, (h, rs) in curves.items()}}
    out = root / SWEEP_DIR
    fileio.write_text(out / "table.json", fileio.dumps_json(table))
    fileio.write_text(out / "table.md", markdown_table(table))
    if curves:
        fileio.write_bytes(out / "bias_curves.png", R.bias_curves_png(curves))
    fileio.write_text(out / "index.html", sweep_page(out / "table.json", tracking.git_commit(root)))
    _log_to_mlflow(root, params, sweep_id, rows, out)
    done = sum(r["status"] == "done" for r in rows)
    echo(f"sweep {sweep_id}: {done}/{len(rows)} arms done; wrote {out / 'table.md'}")
    if present and not table["one_dataset"]:
        echo(f"WARNING: the arms did not train on one packed dataset (dvc.lock hashes: {sorted(map(str, md5s))})")
    return table


def _fmt(v) -> str:
    if v is None:
        return "—"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _short_key(key: str) -> str:
    """train.conditioning.mode -> mode, train.vicico.enabled -> vicico."""
    parts = key.split(".")
    return parts[-2] if parts[-1] == "enabled" and len(parts) > 1 else parts[-1]


def markdown_table(table: dict) -> str:
    cols = table["columns"]
    extractors = sorted({str(r.get("feature_extractor")) for r in table["rows"] if r.get("feature_extractor")})
    lines = [f"Sweep `{table['sweep_id']}`; feature extractor: {', '.join(extractors) or 'unknown'}"
             + (" (offline: NOT comparable to published FIDs)" if "offline" in extractors else ""), "",
             "| arm | overrides | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for r in table["rows"]:
        over = ", ".join(f"{_short_key(k)}={_fmt(v)}" for k, v in r["overrides"].items())
        vals = [_fmt((r["metrics"] or {}).get(c)) for c in cols] if r["metrics"] else ["(missing)"] * len(cols)
        lines.append(f"| {r['arm']} | {over} | " + " | ".join(vals) + " |")
    return "\n".join(lines) + "\n"


def _log_to_mlflow(root: Path, params, sweep_id: str, rows: list[dict], out: Path) -> None:
    from . import tracking

    opened = tracking.sweep_run(params.mlflow, tracking.main_checkout(root), sweep_id)
    if opened is None:
        return
    client, sweep_run_id = opened
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    exp_id = client.get_run(sweep_run_id).info.experiment_id
    for r in rows:
        if not r["metrics"]:
            continue
        found = client.search_runs([exp_id], max_results=1, filter_string=(
            f"tags.`{tracking.SWEEP_TAG}` = '{sweep_id}' and tags.dvc_exp_name = '{r['experiment']}'"))
        flat = {k: float(v) for k, v in fileio.flatten(r["metrics"]).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if found:
            client.log_batch(found[0].info.run_id, metrics=[Metric(k, v, now, 0) for k, v in flat.items()])
        client.log_batch(sweep_run_id, metrics=[Metric(f"{r['arm']}.{k}", flat[k], now, 0)
                                                for k in TABLE_METRICS if k in flat])
    for name in ("table.md", "table.json", "bias_curves.png", "index.html"):
        if (out / name).exists():
            client.log_artifact(sweep_run_id, str(out / name))
    client.set_terminated(sweep_run_id, "FINISHED" if all(r["metrics"] for r in rows) else "FAILED")


def _say(message: str) -> None:
    print(message, flush=True)                 # in order with the output of the dvc commands it starts


def main(root: Path, params, sweep_id: str | None, collect_only: bool) -> int:
    from .params import SWEEP_ID_PATTERN

    if sweep_id is not None and not re.fullmatch(SWEEP_ID_PATTERN, sweep_id):
        raise SystemExit(f"--id {sweep_id!r}: start with a letter, then letters, digits and _ (at most 64)")
    dvc = str(Path(sys.executable).parent / "dvc")
    if not Path(dvc).exists():
        dvc = "dvc"
    if collect_only:
        if not sweep_id:
            raise SystemExit("--collect needs the sweep id (--id)")
        table = collect(root, params, sweep_id, dvc, _say)
    else:
        table = run_sweep(root, params, sweep_id or new_sweep_id(), dvc, _say)
    print((root / SWEEP_DIR / "table.md").read_text())
    return 0 if all(r["metrics"] for r in table["rows"]) else 1
