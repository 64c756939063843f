"""Qwen2.5-VL judge: a tiny randomly initialised Qwen2.5-VL (real architecture) with a locally built
byte-level BPE tokenizer, image and video processors, saved with save_pretrained and loaded back
through the production backend by local path. Replies are gibberish, so the tests check the
parse -> verdict -> policy path, the batching and the prompt filling, not the content."""
from __future__ import annotations

import numpy as np
import pytest

from balancehead.backends.judge import Verdict
from balancehead.backends.production import weights as W
from balancehead.backends.production.params import QwenVLJudgeParams
from balancehead.backends.production.qwen_vl_judge import (PARAM, JudgePrompts, QwenVLJudge, clean_attributes,
                                                           fill_match_prompt)
from balancehead.stages.filter_views import decide
from production_models import QWEN_PIXELS, build_tiny_qwen

PROMPTS = JudgePrompts(
    classification="Standard Image or Non-standard Image?",
    artifact="severe artifacts or normal?",
    match_standard="STRICT same person? A: {attrs1} B: {attrs2} YES or NO.",
    match_nonstandard="LENIENT same person? A: {attrs1} B: {attrs2} YES or NO.",
)


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return build_tiny_qwen(tmp_path_factory.mktemp("tiny_qwen"))


@pytest.fixture(scope="module")
def judge(qwen_dir):
    params = QwenVLJudgeParams(model=str(qwen_dir), dtype="fp32", device="cpu", batch_size=2, max_new_tokens=6,
                               attribute_max_new_tokens=6, min_pixels=QWEN_PIXELS, max_pixels=QWEN_PIXELS, progress=False)
    return QwenVLJudge(params, PROMPTS)


def _images(n, seed=0, size=56):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


def test_tiny_model_runs_greedy_and_every_answer_reaches_a_policy(judge):
    fronts, views = _images(2, 1), _images(3, 2)
    fronts = [fronts[0], fronts[1], fronts[0]]
    results = judge.judge_views(fronts, views)
    assert len(results) == 3
    allowed = {"class": {"standard", "non-standard", None}, "artifact": {"normal", "severe artifacts", None},
               "match": {"YES", "NO", None}}
    for cls, art, match in results:
        for key, v in zip(allowed, (cls, art, match)):
            assert isinstance(v, Verdict) and v.label in allowed[key]
            assert isinstance(v.reason, str) and v.score <= 0.0  # mean log-prob
        verdicts = {"class": cls.label, "artifact": art.label, "match": match.label}
        parsed = art.label is not None and match.label is not None
        for policy in ("reject", "keep"):
            status, reason = decide(verdicts, policy)
            # the filter rule of BalanceHead A.2: keep only a parsed, artifact-free, identity-matching view;
            # an unparseable answer follows the policy
            expected = (art.label == "normal" and match.label == "YES") if parsed else policy == "keep"
            assert status == ("kept" if expected else "rejected"), (verdicts, policy, reason)
            assert (reason is None) == (status == "kept")
    # Greedy decoding is deterministic, and batching does not change a reply.
    again = judge.judge_views(fronts[:1], views[:1])[0]
    assert [v.reason for v in again] == [v.reason for v in results[0]]


def test_single_item_methods_match_heuristic_judge_signatures(judge):
    f, v = _images(2, 3)
    mask = np.full(f.shape[:2], 255, np.uint8)
    c = judge.classify(v, mask, 12.0)
    a = judge.artifacts(v, mask)
    m = judge.match(f, mask, v, mask, c.label == "standard", 12.0)
    assert all(isinstance(x, Verdict) for x in (c, a, m))


CANNED = {
    "Standard Image or": ["Standard Image. The head faces forward.", "**Non-standard image** - rotated",
                          "I cannot tell.", "standard image"],
    "severe artifacts or": ["normal", "Severe artifacts: two noses.", "normal.", "maybe?"],
    "same person": ["YES, same hair.", "No. Different shirt.", "yes", "Unclear"],
}


def _canned_generate(calls):
    def generate(batch, max_new_tokens):
        out = []
        for imgs, prompt in batch:
            calls.append((len(imgs), prompt))
            if prompt.startswith("Describe the person"):
                out.append(("hair: brown, short; hat: no\nextra line", -0.5))
                continue
            key = next(k for k in CANNED if k in prompt)
            n = sum(1 for _, p in calls if key in p) - 1
            out.append((CANNED[key][n % 4], -0.25))
        return out
    return generate


def test_canned_replies_cover_every_verdict_and_policy(judge, monkeypatch):
    calls = []
    monkeypatch.setattr(judge, "generate", _canned_generate(calls))
    monkeypatch.setattr(judge, "_front_attrs", type(judge._front_attrs)())
    front = _images(1, 5)[0]
    views = _images(4, 6)
    res = judge.judge_views([front] * 4, views)
    labels = [(c.label, a.label, m.label) for c, a, m in res]
    assert labels == [("standard", "normal", "YES"), ("non-standard", "severe artifacts", "NO"),
                      (None, "normal", "YES"), ("standard", None, None)]
    assert res[2][0].reason == "I cannot tell."  # raw reply kept for unparseable answers
    decisions = [decide({"class": c, "artifact": a, "match": m}, "reject") for c, a, m in labels]
    assert decisions == [("kept", None), ("rejected", "severe artifacts"), ("kept", None),
                         ("rejected", "unparseable judge answer")]
    assert decide({"class": None, "artifact": None, "match": "YES"}, "keep") == ("kept", None)
    assert decide({"class": "standard", "artifact": "normal", "match": "NO"}, "reject")[1] == \
        "not the same person as the front"
    # Matching prompts: strict for standard views, lenient for non-standard and unreadable ones,
    # two images each, attributes filled from the attribute query (first line only).
    match_prompts = [(n, p) for n, p in calls if "same person" in p]
    assert [p.split()[0] for _, p in match_prompts] == ["STRICT", "LENIENT", "LENIENT", "STRICT"]
    assert all(n == 2 for n, _ in match_prompts)
    assert all("A: hair: brown, short; hat: no B: hair: brown, short; hat: no" in p for _, p in match_prompts)
    # The shared front is described once, each view once.
    assert sum(p.startswith("Describe the person") for _, p in calls) == 1 + 4


def test_prompt_helpers():
    assert fill_match_prompt("A {attrs1} B {attrs2} {json}", "x", "y") == "A x B y {json}"
    assert clean_attributes("\n**hair: black**\nmore", 100) == "hair: black"
    assert clean_attributes("", 100) == "unknown"
    assert clean_attributes("word " * 50, 20).endswith("...")


def test_provenance_records_checksum_and_pin_is_enforced(judge, qwen_dir):
    prov = judge.provenance()
    assert prov["resolved_path"] == str(qwen_dir.resolve())
    assert prov["weight_files"]["model.safetensors"] == W.sha256_file(qwen_dir / "model.safetensors")
    assert prov["weights_sha256"] == W.checksum(qwen_dir)["sha256"]
    bad = QwenVLJudgeParams(model=str(qwen_dir), device="cpu", expected_sha256="0" * 64)
    with pytest.raises(ValueError, match="expected_sha256"):
        QwenVLJudge(bad, PROMPTS)


def test_missing_weights_fail_fast_naming_the_param(tmp_path):
    for model in (None, str(tmp_path / "absent"), "Qwen/Qwen2.5-VL-7B-Instruct"):
        with pytest.raises(W.MissingWeightsError, match=PARAM.replace(".", r"\.")) as err:
            QwenVLJudge(QwenVLJudgeParams(model=model, device="cpu"), PROMPTS)
        assert "offline" in str(err.value)
    (tmp_path / "pickled").mkdir()
    (tmp_path / "pickled" / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(W.MissingWeightsError, match="pickle"):
        QwenVLJudge(QwenVLJudgeParams(model=str(tmp_path / "pickled"), device="cpu"), PROMPTS)
