# Every rule of the workflow, built in one loop over the stage list of src/balancehead/pipeline.py
# (dvc.yaml is generated from the same list), so a rule cannot drift from its DVC stage.
#
# Jobs run `<the interpreter running Snakemake> -m balancehead run STAGE`: no activated venv or
# `balancehead` on PATH is needed. Under `--sdm conda` they run in the environment of
# envs/balancehead.yaml and call its `python`; the package gets into that environment through its
# post-deploy script (envs/balancehead.post-deploy.sh: editable install of BALANCEHEAD_ROOT, this
# workflow's directory), because Snakemake copies an env file to .snakemake/conda/ (or --conda-prefix)
# before `conda env create`, where a relative pip path would no longer point at the repository.
# Resources are Snakemake's standard ones (`threads`, `mem_mb`, `runtime` in minutes, `gpu`), which the
# SLURM executor plugin turns into sbatch arguments (`gpu=N` -> `--gpus=N`); per-stage overrides come
# from params.yaml `workflow.resources`.
import shlex

from snakemake.settings.types import DeploymentMethod

PYTHON = shlex.quote(sys.executable)
CONDA_ENV = "../envs/balancehead.yaml"
IN_CONDA = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
JOB_PYTHON = "python" if IN_CONDA else PYTHON
os.environ["BALANCEHEAD_ROOT"] = str(Path(workflow.basedir).resolve())   # read by the post-deploy script

# Which outputs `snakemake --report` carries, and how it files them.
REPORT = {
    "results/report": dict(htmlindex="index.html", category="Report"),
    "results/dataset_card": dict(patterns=["{name}.png"], category="Dataset card"),
    "results/eval": dict(patterns=["{name}.png"], category="Samples"),
}


def stage_input(s, scatter):
    """Data deps + code files (as DVC), plus the shard markers of a sharded stage's gather rule."""
    deps = s.all_deps(P)          # params-valued inputs (generator.checkpoint) resolved
    if scatter:
        deps += [s.shard_marker(i, NSHARDS) for i in range(NSHARDS)]
    return deps


def stage_output(s):
    outs = []
    for o in s.outs:
        out = o if Path(o).suffix else directory(o)
        outs.append(report(out, **REPORT[o]) if o in REPORT else out)
    outs += [report(m, category="Metrics") for m in s.metric_files]
    outs += [report(p, category="Plots") for p in s.plot_files]
    return outs


def stage_params(s):
    """The params.yaml values this stage declares (Snakemake reruns the rule when they change)."""
    return {key.replace(".", "__"): _jsonable(P.section(key)) for key in s.params}


def _jsonable(v):
    return v.model_dump(mode="json") if hasattr(v, "model_dump") else v


def stage_resources(s):
    """Defaults from the stage list, overridden by params.yaml `workflow.resources.<stage>`."""
    res = dict(mem_mb=s.mem_mb, runtime=s.runtime, gpu=s.gpu)
    override = P.workflow.resources.get(s.name)
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
    return f"{PYTHON} -m dvc commit --force --quiet " + " ".join(shlex.quote(n) for n in done)


# A rule's shell command is evaluated again when its job runs, after this loop has moved on: it must not
# name the loop variable. The gather rule carries its stage name as a param (a constant, so it never
# triggers a rerun); a shard rule takes it from its output's {stage} wildcard, pinned to that one name.
RUN_STAGE = f"{JOB_PYTHON} -m balancehead run {{params.stage}}"
RUN_SHARD = f"{JOB_PYTHON} -m balancehead run {{wildcards.stage}} --shard {{wildcards.i}}/{{wildcards.n}}"

for s in pipeline.STAGES:
    if s.sharded:
        # scatter: shard i of n fills this stage's per-item cache and leaves a marker
        rule:
            name: f"{s.name}_shard"
            input: stage_input(s, scatter=False)
            output: temp(s.shard_marker("{i}", "{n}", stage="{stage}"))
            wildcard_constraints: stage=s.name
            params: **stage_params(s)
            conda: CONDA_ENV
            log: s.shard_log("{i}", "{n}", stage="{stage}")
            threads: P.workflow.threads
            resources: **stage_resources(s)
            shell: RUN_SHARD

    # gather (or the whole stage): the very command DVC runs
    rule:
        name: s.name
        input: stage_input(s, scatter=s.sharded)
        output: stage_output(s)
        params: stage=s.name, **stage_params(s)
        conda: CONDA_ENV
        log: s.log
        threads: P.workflow.threads
        resources: **stage_resources(s)
        shell: RUN_STAGE
