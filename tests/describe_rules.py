"""Print the Snakemake rules of a workflow as JSON, as Snakemake itself parsed them (used by tests)."""
import json
import sys
from pathlib import Path

from snakemake.api import SnakemakeApi
from snakemake.settings.types import OutputSettings, ResourceSettings


def static_resources(rule) -> dict:
    out = {}
    for k, v in rule.resources.items():
        try:
            value = getattr(v, "value", v)
        except ValueError:          # a callable resource (e.g. tmpdir) has no value outside a job
            continue
        if isinstance(value, (int, str)) and not k.startswith("_"):
            out[k] = value
    return out


def main(root: str) -> None:
    rules = {}
    with SnakemakeApi(OutputSettings()) as api:
        wf = api.workflow(resource_settings=ResourceSettings(cores=1), snakefile=Path(root) / "Snakefile",
                          workdir=Path(root))
        for rule in wf._workflow.rules:
            rules[rule.name] = {
                "input": [str(f) for f in rule.input],
                "output": [str(f) for f in rule.output],
                "params": sorted(rule.params._names) if hasattr(rule.params, "_names") else [],
                "log": [str(f) for f in rule.log],
                "shell": rule.shellcmd,
                "resources": static_resources(rule),
                "threads": rule.resources.get("_cores") if isinstance(rule.resources.get("_cores"), int) else None,
                "wildcard_constraints": {k: str(getattr(v, "pattern", v)) for k, v in
                                         (rule.wildcard_constraints or {}).items()},
                "report_outputs": [str(f) for f in rule.output if f.flags.get("report")],
            }
    print("@@RULES@@" + json.dumps(rules))


if __name__ == "__main__":
    main(sys.argv[1])
