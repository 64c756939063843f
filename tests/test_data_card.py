import json

from balancehead.data.card import build_card, write_card
from test_data_fixtures import make_packed


def test_counts_histograms_and_reasons(tmp_path):
    rows = make_packed(tmp_path, n_subjects=3, views=4)
    rows.append(dict(image_id="x_cand", subject_id="subj000", role="front-candidate", yaw=170.0,
                     rejected_by="select_front", reasons="yaw 170 > 10"))
    card = build_card(rows, {"ingest": {"in": 3, "out": 3}})
    assert card["num_rows"] == 3 * 6 + 1 and card["num_kept"] == 3 * 4
    assert card["roles"]["view"] == {"total": 12, "kept": 9, "rejected": 3}
    assert card["roles"]["source"]["rejected"] == 3
    assert card["rejections"]["by_stage"] == {"assess_quality": 3, "filter_views": 3, "select_front": 1}
    assert card["rejections"]["by_reason"]["assess_quality"] == {"blurry": 3, "low contrast": 3}
    yaw = card["yaw_histogram"]
    assert yaw["bins"] == ["0", "45", "90", "135", "180", "-135", "-90", "-45"]
    assert sum(yaw["before"]) == 3 * 5 + 1 and sum(yaw["after"]) == 3 * 4
    assert yaw["after"][0] >= 3 and yaw["before"][4] - yaw["after"][4] >= 1  # rejected candidate at 170°
    assert card["iqa_histogram"]["all"][2] == 3  # scores 20, 21, 22
    assert card["stages"] == {"ingest": {"in": 3, "out": 3}}
    json.dumps(card)


def test_write_card_deterministic_files(tmp_path):
    rows = make_packed(tmp_path / "p", n_subjects=2, views=3)
    card = build_card(rows, {})
    a = write_card(card, tmp_path / "a")
    b = write_card(card, tmp_path / "b")
    assert [p.name for p in a] == ["card.json", "yaw_histogram.png", "iqa_histogram.png", "rejections.png"]
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes()
    png = a[1].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and b"tEXt" not in png and b"tIME" not in png
    assert json.loads(a[0].read_text())["num_kept"] == card["num_kept"]
