# Helpers that turn a stage of src/balancehead/pipeline.py into the fields of a Snakemake rule.
# Every rule of rules/*.smk is built from these, so a rule cannot drift from dvc.yaml.
import shlex


def S(name):
    return pipeline.stage(name)


def stage_input(name):
    """Data deps + code files (as DVC), plus the shard markers of a sharded stage."""
    s = S(name)
    deps = s.all_deps(P)
    if s.sharded:
        deps += [s.shard_marker(i, NSHARDS) for i in range(NSHARDS)]
    return deps


def stage_output(name):
    s = S(name)
    outs = [directory(o) if not Path(o).suffix else o for o in s.outs]
    return outs + list(s.metrics) + list(s.plots)


def stage_params(name):
    """The params.yaml values this stage declares (Snakemake reruns the rule when they change)."""
    return {key.replace(".", "__"): _jsonable(P.section(key)) for key in S(name).params}


def _jsonable(v):
    return v.model_dump(mode="json") if hasattr(v, "model_dump") else v


def stage_resources(name):
    """Defaults from the stage list, overridden by params.yaml `workflow.resources.<stage>`."""
    s = S(name)
    res = dict(mem_mb=s.mem_mb, runtime=s.runtime, gpus=s.gpus)
    override = P.workflow.resources.get(name)
    if override is not None:
        res.update({k: v for k, v in override.model_dump().items() if v is not None})
    return res


def dvc_commit_command():
    """`dvc commit` of the stages in this run's DAG: after success Snakemake holds them all up to
    date, so DVC records exactly them; stages outside the target are left to their own state."""
    in_dag = {job.rule.name for job in workflow.dag.jobs}
    done = [s.name for s in pipeline.STAGES
            if s.name in in_dag and all(Path(o).exists() for o in s.all_outs())]
    if not done:
        return "true"
    return "dvc commit --force --quiet " + " ".join(shlex.quote(n) for n in done)


def stage_input_unsharded(name):
    return S(name).all_deps(P)
