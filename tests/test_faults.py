"""Fault injection (issue 14): what an adversarial user or a flaky cluster does to a run.

Each case asserts one of two outcomes: the fault is *detected* with the file (or key) named, or the run
*recovers* byte-identically. Nothing may hang: every case runs under a hard timeout (SIGALRM), so a
regression shows up as a failure, not as a stuck CI job.
"""
from __future__ import annotations

import faulthandler
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from balancehead.params import ParamsError, load_params, validate
from conftest import REPO
from test_params import mutated

RAW = yaml.safe_load((REPO / "params.yaml").read_text())


@contextmanager
def hard_timeout(seconds: int):
    """Fail (not hang) when the body takes longer than `seconds`: SIGALRM raises in Python code; if the
    body is stuck inside C code (a LAPACK routine on NaN), faulthandler dumps the stacks and ends the
    process 30 s later, so CI fails instead of hanging."""
    def _alarm(signum, frame):
        raise TimeoutError(f"case did not finish within {seconds} s")
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    faulthandler.dump_traceback_later(seconds + 30, exit=True)
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)




# ----------------------------------------------------------------------------------------- params
@pytest.mark.parametrize("path,value,expect", [
    ("camera.pivot", [float("nan"), 0.0, 0.2], "camera.pivot: Value error, [0] must be a finite number"),
    ("camera.radius", float("inf"), "camera.radius: Value error, must be a finite number"),
    ("train.data.yaw_bin_weights", [1.0] * 7 + [float("nan")], "train.data.yaw_bin_weights"),
    ("filter_views.judge", {"standard_max_yaw": float("-inf")}, "filter_views.judge"),
    ("workflow.shards", "16", "workflow.shards: Value error, must be a whole number"),
    ("workflow.shards", 16.0, "workflow.shards: Value error, must be a whole number"),
    ("workflow.shards", True, "workflow.shards: Value error, must be a whole number"),
    ("seed", 1.5, "seed"),
    ("camera.radius", 10**400, "camera.radius: Value error, must be a finite number"),
    ("camera.radius", "2.7", "camera.radius: Value error, must be a number"),
])
def test_params_refuse_non_finite_and_loose_numbers(path, value, expect):
    with hard_timeout(20), pytest.raises(ParamsError) as err:
        validate(mutated(path, value))
    assert expect in str(err.value)


def test_params_accept_ints_for_floats():
    p = validate(mutated("camera.pivot", [0, 0, 1]))
    assert p.camera.pivot == (0.0, 0.0, 1.0)


def test_yaml_aliases_are_refused_before_expansion(tmp_path):
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for k in range(1, 12):   # 9**12 strings if expanded
        lines.append(f"a{k}: &a{k} [" + ",".join([f"*a{k - 1}"] * 9) + "]")
    f = tmp_path / "params.yaml"
    f.write_text("\n".join(lines) + "\n")
    with hard_timeout(20), pytest.raises(ParamsError, match="anchors and aliases") as err:
        load_params(f)
    assert len(str(err.value)) < 2000            # the expanded value is never printed


def test_yaml_duplicate_key_is_named(tmp_path):
    f = tmp_path / "params.yaml"
    f.write_text((REPO / "params.yaml").read_text() + "\nseed: 7\n")
    with pytest.raises(ParamsError, match="key 'seed' is written twice"):
        load_params(f)


# ------------------------------------------------------------------------------ training / evaluation
@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    from train_fixtures import make_dataset
    return make_dataset(tmp_path_factory.mktemp("packed"))


def _small_train(**kw):
    from balancehead.train.params import TrainParams
    base = dict(batch=4, batch_gpu=2, total_kimg=0.008, kimg_per_tick=0.004, eval={"num_images": 96},
                model={"n_coarse": 4, "n_importance": 4})
    base.update(kw)
    return TrainParams(**base)


def test_sigterm_during_kimg0_evaluation_checkpoints_and_exits_3(packed, tmp_path):
    """The signal arrives inside the first Fréchet evaluation: checkpoint + exit 3 without finishing it."""
    import os

    from balancehead.train.loop import Trainer
    from balancehead.train.preemption import Preempted, StopFlag
    from balancehead.train.state import latest

    tr = Trainer(_small_train(), packed, tmp_path, seed=0)
    calls = []
    forward = tr.G_ema.forward

    def forward_then_signal(*a, **k):
        calls.append(1)
        os.kill(os.getpid(), signal.SIGTERM)
        return forward(*a, **k)

    tr.G_ema.forward = forward_then_signal
    stop = StopFlag()
    try:
        with hard_timeout(60), pytest.raises(Preempted) as exc:
            tr.run(stop=stop)
    finally:
        stop.close()
    assert exc.value.code == 3
    assert len(calls) == 1                        # 3 batches of fakes were due; it stopped after the first
    assert latest(tmp_path / "checkpoints") is not None


def test_frechet_refuses_nan_instead_of_hanging():
    import numpy as np

    from balancehead.evaluation.fid import frechet_distance
    from balancehead.train.features import frechet_distance as train_fd

    s = np.eye(4)
    bad = s.copy()
    bad[1, 2] = np.nan
    with hard_timeout(10):
        with pytest.raises(ValueError, match="sigma2 has 1 non-finite"):
            frechet_distance(np.zeros(4), s, np.zeros(4), bad)
        with pytest.raises(ValueError, match="non-finite"):
            train_fd(np.full((8, 4), np.nan), np.ones((8, 4)))


# ------------------------------------------------------------------------------------ readers: NaN
def _copy_packed(packed, tmp_path) -> Path:
    import shutil
    dst = tmp_path / "packed"
    shutil.copytree(packed, dst)
    return dst


def test_nan_condition_row_is_named(packed, tmp_path):
    import json

    import numpy as np
    from safetensors.numpy import save

    from balancehead.data.conditions import META_KEY, load_conditions
    from balancehead.data.reader import ShardDataset

    root = _copy_packed(packed, tmp_path)
    path = root / "conditions.safetensors"
    ids, arr, meta = load_conditions(path)
    arr = arr.copy()
    arr[2, 5] = np.nan                            # a bit-rotted row, written as the format would
    (root / "digests.json").unlink(missing_ok=True)
    path.write_bytes(save({"features": arr}, metadata={META_KEY: json.dumps(dict(meta, ids=ids))}))
    with hard_timeout(20), pytest.raises(ValueError, match=rf"conditions.safetensors: 1 condition row.*'{ids[2]}' \(row 2\)"):
        ShardDataset(root)


def test_nan_camera_label_is_refused_when_written_and_when_read(packed, tmp_path):
    import io
    import tarfile

    import numpy as np

    from balancehead.data.reader import ShardDataset
    from balancehead.data.shards import ShardWriter

    with pytest.raises(ValueError, match="k0: label holds a non-finite number"):
        with ShardWriter(tmp_path / "w", 4) as w:
            w.add("k0", np.zeros((8, 8, 3), np.uint8), {"camera": [float("nan")] * 25})

    root = _copy_packed(packed, tmp_path)
    (root / "digests.json").unlink(missing_ok=True)
    shard = sorted((root / "shards").glob("*.tar"))[0]
    with tarfile.open(shard) as tf:
        members = [(m, tf.extractfile(m).read()) for m in tf]
    victim = next(m.name for m, _ in members if m.name.endswith(".json"))
    with tarfile.open(shard, "w", format=tarfile.PAX_FORMAT) as tf:
        for m, data in members:
            if m.name == victim:
                data = data.replace(b'"camera":[', b'"camera":[NaN,', 1).replace(b",", b"", 0)
                label = __import__("json").loads(data)
                label["camera"] = label["camera"][:25]
                data = __import__("json").dumps(label).encode()
                m.size = len(data)
            tf.addfile(m, io.BytesIO(data))
    ds = ShardDataset(root, shuffle=False)
    with hard_timeout(30), pytest.raises(ValueError, match=rf"{shard.name}: sample '{victim[:-5]}': label 'camera' must be 25 finite"):
        for _ in ds:
            pass


# ------------------------------------------------------------------------------------------ ingest
def _png(seed: int, size: int = 40) -> bytes:
    import io

    import numpy as np
    from PIL import Image

    arr = (np.random.default_rng(seed).random((size, size, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 40 40\n%%EndComments\n"
       b"newpath 0 0 moveto 40 40 lineto stroke\nshowpage\n%%EOF\n")


def _load_all(path):
    from balancehead.imageload import LoadConfig, load_source
    return list(load_source(path, LoadConfig(max_side=64, min_side=8), progress=False))


def test_odd_zip_member_names_each_become_one_row(tmp_path):
    import zipfile

    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("./a.png", _png(1))
        zf.writestr("/photos/b.png", _png(2))
        zf.writestr("photos\\c.png", _png(3))              # a Windows zip
        zf.writestr("dup.png", _png(4))
        with pytest.warns(UserWarning, match="Duplicate name"):
            zf.writestr("dup.png", _png(5))              # same name twice: both photos are kept
    with hard_timeout(20):
        rows = _load_all(archive)
    assert [r.relpath for r in rows] == ["a.png", "photos/b.png", "photos/c.png", "dup.png", "dup.png"]
    assert all(r.ok for r in rows), [(r.relpath, r.reason, r.detail) for r in rows]
    assert len({r.item_id for r in rows}) == 5 and len({r.sha256 for r in rows}) == 5


def test_non_utf8_names_in_tar_become_rows(tmp_path):
    import io
    import tarfile

    archive = tmp_path / "photos.tar.gz"
    with tarfile.open(archive, "w:gz", format=tarfile.GNU_FORMAT, encoding="latin-1") as tf:
        for name, data in (("caf\xe9.png", _png(1)), ("ok.png", _png(2))):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with hard_timeout(20):
        rows = _load_all(archive)
    assert [r.ok for r in rows] == [True, True]
    assert rows[0].relpath == "caf\ufffd.png"            # printable, JSON/parquet-safe
    __import__("json").dumps([r.record() for r in rows])


def test_postscript_named_jpg_is_never_handed_to_ghostscript(tmp_path, monkeypatch):
    from PIL import EpsImagePlugin

    def no_gs(*a, **k):
        raise AssertionError("Ghostscript was invoked")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", no_gs)
    (tmp_path / "evil.jpg").write_bytes(EPS)
    (tmp_path / "good.png").write_bytes(_png(1))
    with hard_timeout(20):
        rows = {r.relpath: r for r in _load_all(tmp_path)}
    assert rows["evil.jpg"].reason == "not_an_image" and rows["good.png"].ok


def test_truncated_tar_gz_keeps_earlier_members_and_names_the_rest(tmp_path):
    import io
    import tarfile

    archive = tmp_path / "photos.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for k in range(6):
            data = _png(k, size=64)
            info = tarfile.TarInfo(f"p{k}.png")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    raw = archive.read_bytes()
    archive.write_bytes(raw[: len(raw) * 2 // 3])
    with hard_timeout(20):
        rows = _load_all(archive)
    assert rows[0].ok
    bad = [r for r in rows if not r.ok]
    assert bad and all(r.reason == "unreadable" for r in bad)


@pytest.mark.parametrize("name,content", [("empty.zip", b""), ("fake.zip", b"not a zip at all"),
                                          ("empty.tar", b""), ("fake.tar.gz", b"\x1f\x8b garbage")])
def test_unreadable_archive_names_ingest_source(tmp_path, name, content):
    from balancehead.pipeline import BY_NAME
    from balancehead.runner import StageContext
    from balancehead.stages import ingest

    (tmp_path / name).write_bytes(content)
    params = validate(mutated("ingest.source", str(tmp_path / name)))
    ctx = StageContext(all_params=params, stage=BY_NAME["ingest"], root=tmp_path)
    with hard_timeout(20), pytest.raises(ValueError, match=rf"ingest.source: .*{name}: not a readable"):
        ingest.main(ctx)


def test_ingest_stage_survives_hostile_archive(tmp_path):
    """Odd names, duplicates, EPS-as-JPEG and a non-image in one zip: one row each, no abort."""
    import json
    import zipfile

    from balancehead.pipeline import BY_NAME
    from balancehead.runner import StageContext
    from balancehead.stages import ingest

    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("./a.png", _png(1))
        zf.writestr("/x/b.png", _png(2))
        zf.writestr("x\\c.png", _png(3))
        zf.writestr("evil.jpg", EPS)
        zf.writestr("notes.txt", b"hello")
    raw = mutated("ingest.source", str(archive))
    raw["ingest"].update(min_side=8)
    ctx = StageContext(all_params=validate(raw), stage=BY_NAME["ingest"], root=tmp_path)
    with hard_timeout(60):
        ingest.main(ctx)
    rows = [json.loads(line) for line in (tmp_path / "data/ingest/items.jsonl").read_text().splitlines()]
    got = {r["provenance"]["path"]: r["reason"] for r in rows}
    assert got == {"a.png": None, "x/b.png": None, "x/c.png": None, "evil.jpg": "not_an_image",
                   "notes.txt": "unsupported_type"}


# ---------------------------------------------------------------------------------- integrity
def flip(path: Path, offset: int | None = None) -> None:
    """Flip one byte (in the middle by default), as bit rot would."""
    data = bytearray(path.read_bytes())
    k = len(data) // 2 if offset is None else offset
    data[k] ^= 0x5A
    path.write_bytes(bytes(data))


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def ingested(tmp_path):
    """A tiny ingest run over a folder of 4 photos (fast: no procedural world)."""
    from balancehead.pipeline import BY_NAME
    from balancehead.runner import StageContext
    from balancehead.stages import ingest

    photos = tmp_path / "photos"
    photos.mkdir()
    for k in range(4):
        (photos / f"p{k}.png").write_bytes(_png(k))
    raw = mutated("ingest.source", str(photos))
    raw["ingest"].update(min_side=8)
    params = validate(raw)

    def run():
        ingest.main(StageContext(all_params=params, stage=BY_NAME["ingest"], root=tmp_path))
        return _tree(tmp_path / "data/ingest")

    return tmp_path, params, run


def test_flipped_cache_item_is_recomputed_byte_identically(ingested):
    root, _, run = ingested
    first = run()
    victim = next((root / "data/.items/ingest").glob("*/*.png"))   # hard-linked into data/ingest/files too
    flip(victim)
    with hard_timeout(60):
        assert run() == first


def test_emptied_cache_json_is_recomputed(ingested):
    root, _, run = ingested
    first = run()
    victim = next((root / "data/.items/ingest").glob("*/*.json"))
    victim.write_bytes(b"")
    with hard_timeout(60):
        assert run() == first


def test_corrupt_upstream_file_names_file_item_and_stage(ingested):
    from balancehead.integrity import IntegrityError
    from balancehead.pipeline import BY_NAME
    from balancehead.runner import StageContext

    root, params, run = ingested
    run()
    rec = __import__("json").loads((root / "data/ingest/items.jsonl").read_text().splitlines()[0])
    victim = root / "data/ingest/files" / f"{rec['id']}.png"
    flip(victim)
    ctx = StageContext(all_params=params, stage=BY_NAME["assess_quality"], root=root)
    with pytest.raises(IntegrityError) as err:
        ctx.item_file("sources", rec["id"], "png")
    msg = str(err.value)
    assert str(victim) in msg and f"(item {rec['id']})" in msg and "rerun stage 'ingest'" in msg


def test_cache_key_follows_upstream_digests(ingested):
    from balancehead.pipeline import BY_NAME
    from balancehead.runner import StageContext

    root, params, run = ingested
    run()
    ctx = StageContext(all_params=params, stage=BY_NAME["assess_quality"], root=root)
    key = ctx.cache_key()
    digests = root / "data/ingest/digests.json"
    digests.write_text(digests.read_text().replace('"files": {', '"files": {"x": "0", ', 1))
    assert ctx.cache_key() != key


def test_verify_command_names_the_stage_to_rerun(ingested):
    import subprocess
    import sys

    root, _, run = ingested
    run()
    (root / "params.yaml").write_text(yaml.safe_dump(RAW))
    env = dict(__import__("os").environ, PYTHONPATH=str(REPO / "src"))
    ok = subprocess.run([sys.executable, "-m", "balancehead", "verify", "ingest"], cwd=root, env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "ok  data/ingest" in ok.stdout
    flip(next((root / "data/ingest/files").glob("*.png")))
    bad = subprocess.run([sys.executable, "-m", "balancehead", "verify", "ingest"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    assert "DAMAGED  data/ingest" in bad.stdout and "balancehead run ingest" in bad.stdout


def _packed_with_digests(packed, tmp_path) -> Path:
    from balancehead.integrity import write_digests
    root = _copy_packed(packed, tmp_path)
    write_digests(root, "pack_dataset")
    return root


def test_flipped_shard_byte_is_detected_with_the_file_named(packed, tmp_path):
    from balancehead.data.reader import ShardDataset
    from balancehead.integrity import IntegrityError

    root = _packed_with_digests(packed, tmp_path)
    shard = sorted((root / "shards").glob("*.tar"))[0]
    flip(shard, 1500)                      # inside the first sample's label/image bytes
    ds = ShardDataset(root, shuffle=False)
    with hard_timeout(30), pytest.raises(IntegrityError, match=rf"{shard}.*corrupt.*rerun stage 'pack_dataset'"):
        for _ in ds:
            pass


def test_zeroed_manifest_bytes_are_detected(packed, tmp_path):
    from balancehead.data.reader import ShardDataset
    from balancehead.integrity import IntegrityError

    root = _packed_with_digests(packed, tmp_path)
    manifest = root / "manifest.parquet"
    data = bytearray(manifest.read_bytes())
    data[len(data) // 3: len(data) // 3 + 8] = bytes(8)          # the probe: eight zero bytes
    manifest.write_bytes(bytes(data))
    with hard_timeout(30), pytest.raises(IntegrityError, match="manifest.parquet is corrupt"):
        ShardDataset(root)


def test_flipped_condition_table_is_detected(packed, tmp_path):
    from balancehead.data.reader import ShardDataset
    from balancehead.integrity import IntegrityError

    root = _packed_with_digests(packed, tmp_path)
    flip(root / "conditions.safetensors", -8)
    with hard_timeout(30), pytest.raises(IntegrityError, match="conditions.safetensors is corrupt"):
        ShardDataset(root)


def test_garbled_weights_are_refused(tmp_path):
    from balancehead.models import CheckpointError, Generator, GeneratorConfig, load_checkpoint, save_checkpoint

    path = save_checkpoint(tmp_path / "G_ema", {"G_ema": Generator(GeneratorConfig.tiny())})
    flip(path / "model.safetensors")
    with hard_timeout(30), pytest.raises(CheckpointError, match=r"model.safetensors is corrupt"):
        load_checkpoint(path)


def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(packed, tmp_path):
    from balancehead.integrity import temp_tag
    from balancehead.train.loop import Trainer
    from balancehead.train.state import latest

    tp = _small_train(total_kimg=0.016, eval={"num_images": 8})
    with hard_timeout(120):
        Trainer(tp, packed, tmp_path, seed=0).run(max_steps=2, evaluate=False)   # ticks at 4, 8 images
        ckpts = tmp_path / "checkpoints"
        newest = latest(ckpts)
        tensors = newest / "model.safetensors"
        tensors.write_bytes(tensors.read_bytes()[:100])                          # truncated
        leftover = ckpts / f".ckpt-000000099.tmp-{temp_tag().rsplit('-', 1)[0]}-{2**22 + 99}"
        leftover.mkdir()                                                          # a killed writer's leftover
        back = latest(ckpts)
        assert back is not None and back != newest and back.name < newest.name
        assert not leftover.exists()
        assert Trainer(tp, packed, tmp_path, seed=0).c.step >= 1


# ------------------------------------------------------------------------------ params: mlflow
@pytest.mark.parametrize("uri,expect", [
    ("sqlite:////etc/mlflow.db", "is outside the repository"),
    ("sqlite:///../elsewhere/mlflow.db", "is outside the repository"),
    ("file:///tmp/mlruns", "refuses the file store"),
    ("mlruns", "refuses the file store"),
    ("http://tracking.example:5000", "needs mlflow.allow_outside_repo: true"),
    ("postgresql://u@h/db", "unsupported scheme 'postgresql'"),
])
def test_tracking_uri_is_checked_before_any_work(tmp_path, uri, expect):
    raw = mutated("mlflow.tracking_uri", uri)
    (tmp_path / "repo").mkdir()
    f = tmp_path / "repo/params.yaml"
    f.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match="mlflow.tracking_uri") as err:
        load_params(f)
    assert expect in str(err.value)


def test_tracking_uri_outside_repo_when_allowed(tmp_path):
    raw = mutated("mlflow.tracking_uri", f"sqlite:///{tmp_path}/shared/mlflow.db")
    raw["mlflow"]["allow_outside_repo"] = True
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo/params.yaml").write_text(yaml.safe_dump(raw))
    assert load_params(tmp_path / "repo/params.yaml").mlflow.allow_outside_repo


# ------------------------------------------------------------------------------------ locking
def test_stage_refuses_to_run_while_snakemake_holds_the_checkout(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "params.yaml").write_text(yaml.safe_dump(RAW))
    (tmp_path / ".snakemake/locks").mkdir(parents=True)
    (tmp_path / ".snakemake/locks/0.input.lock").write_text("")
    env = {k: v for k, v in os.environ.items() if k != "BALANCEHEAD_ORCHESTRATOR"}
    env["PYTHONPATH"] = str(REPO / "src")
    proc = subprocess.run([sys.executable, "-m", "balancehead", "run", "ingest"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 4
    assert "Snakemake is running in this checkout" in proc.stderr and "snakemake --unlock" in proc.stderr
    assert not (tmp_path / "data").exists()


def test_snakemake_refuses_to_start_while_dvc_runs(tmp_path):
    import json
    import os

    from balancehead.locking import WorkflowLocked, refuse_if_dvc_running

    (tmp_path / ".dvc/tmp").mkdir(parents=True)
    rw = tmp_path / ".dvc/tmp/rwlock"
    rw.write_text(json.dumps({"write": {"data/ingest": {"pid": os.getppid(), "cmd": "dvc repro"}}, "read": {}}))
    with pytest.raises(WorkflowLocked, match=rf"DVC is running in this checkout \({os.getppid()}: dvc repro\)"):
        refuse_if_dvc_running(tmp_path)
    rw.write_text(json.dumps({"write": {"data/ingest": {"pid": 2**22 + 12345, "cmd": "dvc repro"}}}))
    refuse_if_dvc_running(tmp_path)                  # a dead DVC's entry does not block


def test_snakefile_runs_the_dvc_check(tmp_path):
    text = (REPO / "Snakefile").read_text()
    assert "refuse_if_dvc_running(workflow.basedir)" in text and "ORCHESTRATOR_ENV" in text


# ------------------------------------------------------------------------------------- kill -9
def test_kill_minus_nine_at_a_seeded_point_then_rerun_is_byte_identical(tmp_path):
    """kill -9 of `balancehead run ingest` after a seeded number of committed items (plus a planted
    leftover of a dead writer): the rerun cleans up and ends byte-identical to an uninterrupted run."""
    import os
    import shutil
    import subprocess
    import sys
    import time

    import numpy as np

    from balancehead.integrity import temp_tag

    raw = mutated("ingest.num_sources", 120)
    raw["ingest"]["image_size"] = 48
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
    env.pop("BALANCEHEAD_ORCHESTRATOR", None)
    cmd = [sys.executable, "-m", "balancehead", "run", "ingest"]
    kill_at = int(np.random.default_rng(14).integers(10, 40))
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cache_root = tmp_path / "data/.items/ingest"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if cache_root.exists() and len(list(cache_root.glob("*/src-*.json"))) >= kill_at:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "finished before the kill point; raise num_sources"
    proc.kill()
    proc.wait()
    cache = next(cache_root.iterdir())
    dead = f"{temp_tag().rsplit('-', 1)[0]}-{2**22 + 4321}"
    (cache / f".src-999999.png.tmp-{dead}.abc123.tmp").write_bytes(b"half")
    subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    assert not [p for p in (tmp_path / "data").rglob("*") if ".tmp" in p.name]
    resumed = _tree(tmp_path / "data/ingest")
    shutil.rmtree(tmp_path / "data")
    subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300)
    assert _tree(tmp_path / "data/ingest") == resumed


def test_exponent_without_dot_is_a_number(tmp_path):
    """PyYAML reads `1e-3` as a string; for a float key it means the number."""
    f = tmp_path / "params.yaml"
    f.write_text((REPO / "params.yaml").read_text().replace("radius: 2.7", "radius: 27e-1", 1))
    assert "27e-1" in f.read_text()
    assert load_params(f).camera.radius == pytest.approx(2.7)


def test_a_stage_start_removes_what_a_killed_run_left_in_its_output_directories(tmp_path):
    """kill -9 of `evaluate` while it wrote results/eval/memorisation.json (found by test_kill_every_stage):
    evaluate writes its files straight into its output directory, so the rerun must remove the dead
    writer's temp file there itself. Every stage start (`balancehead run`) cleans in and beside its
    outputs; a live writer's temp file (a concurrent shard) and the stage's finished files stay."""
    import os
    import subprocess
    import sys

    from balancehead import integrity
    from stage_context import stage_context

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = integrity.temp_tag().rsplit("-", 1)[0]
    eval_dir = tmp_path / "results" / "eval"
    eval_dir.mkdir(parents=True)
    killed = eval_dir / f".memorisation.json.tmp-{host}-{dead.pid}.wx0m_gwl.tmp"
    beside = tmp_path / "results" / f".metrics.json.tmp-{host}-{dead.pid}.ab12.tmp"
    live = eval_dir / f".labels.json.tmp-{host}-{os.getpid()}.cd34.tmp"
    finished = eval_dir / "fakes_front.png"
    for f in (killed, beside, live, finished):
        f.write_bytes(b"x")
    ctx = stage_context(tmp_path, "evaluate")
    removed = ctx.clean_leftovers()
    assert sorted(removed) == sorted([killed, beside])
    assert not killed.exists() and not beside.exists() and live.exists() and finished.exists()


def test_train_assembly_leftover_of_a_killed_run_is_removed(tmp_path):
    """kill -9 of `train` while it assembles data/train (found by test_kill_every_stage): the rerun
    removes the dead process's `data/.train.tmp-<host>-<pid>/`, as the item stages do for theirs."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from balancehead import integrity
    from balancehead.models import Generator, GeneratorConfig
    from balancehead.stages import train
    from stage_context import stage_context

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = integrity.temp_tag().rsplit("-", 1)[0]
    leftover = tmp_path / "data" / f".train.tmp-{host}-{dead.pid}"
    (leftover / "G_ema").mkdir(parents=True)
    (leftover / f".digests.json.tmp-{host}-{dead.pid}.x.tmp").write_text("half")
    ctx = stage_context(tmp_path, "train")
    work = tmp_path / "work"
    (work / "fakes").mkdir(parents=True)
    trainer = SimpleNamespace(G_ema=Generator(GeneratorConfig.tiny()),
                              spec=SimpleNamespace(mode="view", to_meta=lambda: {"mode": "view"}))
    with hard_timeout(120):
        train._assemble(ctx, trainer, work, [], {"kimg": 0.0, "fd_random_features_kimg0": None,
                                                 "fd_random_features_final": None})
    assert (tmp_path / "data/train/G_ema").is_dir() and not leftover.exists()
    assert not [p.name for p in (tmp_path / "data").iterdir() if ".tmp" in p.name]
