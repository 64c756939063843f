"""The filter decision of BalanceHead A.2, case by case (the production-judge test feeds it real model
answers; this pins the rule itself)."""
import pytest

from balancehead.stages.filter_views import decide


@pytest.mark.parametrize("artifact,match,policy,status", [
    ("normal", "YES", "reject", "kept"),
    ("normal", "NO", "reject", "rejected"),
    ("severe artifacts", "YES", "keep", "rejected"),
    (None, "YES", "reject", "rejected"),
    (None, "YES", "keep", "kept"),
    ("normal", None, "keep", "kept"),
])
def test_decide(artifact, match, policy, status):
    got, reason = decide({"class": "standard", "artifact": artifact, "match": match}, policy)
    assert got == status and (reason is None) == (got == "kept" or policy == "keep" and None in (artifact, match))
