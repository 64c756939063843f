"""The stage API: named inputs/outputs declared once in pipeline.py, params limited to the declared
sections (enforced at run time by ctx.params, checked statically here for every stage module), and no
data path literal in any stage module."""
from __future__ import annotations

import ast
import re

import pytest

from balancehead import pipeline
from balancehead.runner import UndeclaredParamsError
from stage_context import REPO, stage_context

STAGES_DIR = REPO / "src/balancehead/stages"


def test_undeclared_params_raise_naming_the_stage_and_pipeline(tmp_path):
    ctx = stage_context(tmp_path, "pack_dataset")
    assert ctx.params.pack_dataset.shard_size >= 1
    with pytest.raises(UndeclaredParamsError, match=r"pack_dataset.*'train'.*pipeline\.py"):
        ctx.params.train
    views = stage_context(tmp_path, "synth_views")
    assert views.params.synth_front.prompt_id                     # a dotted declaration: that key only
    with pytest.raises(UndeclaredParamsError, match="synth_front.candidates"):
        views.params.synth_front.candidates
    assert ctx.params.workflow.threads >= 1 and ctx.params.mlflow.enabled is False   # bookkeeping
    assert set(ctx.params.model_dump()) == {"pack_dataset", "select_front"}
    assert set(ctx.params.model_dump()["select_front"]) == {"backend", "arcface"}   # the identity backend only
    with pytest.raises(UndeclaredParamsError, match="seed"):
        ctx.seed("x")                                             # pack_dataset draws nothing
    assert ctx.input("views") == tmp_path / "data/views"
    assert ctx.output("yaw_hist") == tmp_path / "results/yaw_hist.tsv"
    with pytest.raises(KeyError, match="no input 'nope'"):
        ctx.input("nope")


def test_no_data_path_literal_in_stage_modules():
    offenders = [f"{p.name}:{i}" for p in sorted(STAGES_DIR.glob("*.py"))
                 for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\b(data|results)/", line)]
    assert not offenders, offenders


def _module_strings(tree) -> dict[str, str]:
    consts = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets = node.targets[0]
            names = targets.elts if isinstance(targets, ast.Tuple) else [targets]
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            for n, v in zip(names, values):
                if isinstance(n, ast.Name) and isinstance(v, ast.Constant) and isinstance(v.value, str):
                    consts[n.id] = v.value
    return consts


@pytest.mark.parametrize("module", sorted({s.module or s.name for s in pipeline.STAGES}))
def test_stage_code_uses_only_declared_names_and_sections(module):
    users = [s for s in pipeline.STAGES if (s.module or s.name) == module]
    tree = ast.parse((STAGES_DIR / f"{module}.py").read_text())
    consts = _module_strings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                and node.value.attr == "params" and isinstance(node.value.value, ast.Name) and node.value.value.id == "ctx":
            section = node.attr
            if section in ("workflow", "mlflow", "model_dump", "section"):
                continue
            for s in users:
                assert any(k == section or k.startswith(section + ".") for k in s.params), \
                    f"{module}.py reads ctx.params.{section}, which stage {s.name} does not declare"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args \
                and node.func.attr in ("input", "output", "read_items", "item_file"):
            arg = node.args[0]
            name = arg.value if isinstance(arg, ast.Constant) else consts.get(getattr(arg, "id", None))
            if not isinstance(name, str):
                continue
            for s in users:
                declared = s.inputs if node.func.attr != "output" else s.named_outputs()
                assert name in declared, f"{module}.py asks {node.func.attr}({name!r}) of stage {s.name}"
