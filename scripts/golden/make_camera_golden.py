"""Golden camera labels from the official EG3D code (LookAtPoseSampler + FOV_to_intrinsics).

    python scripts/golden/make_camera_golden.py --eg3d /path/to/NVlabs/eg3d/eg3d

Imports `camera_utils` from the given checkout (never copied into this repository) and writes only the
numbers to tests/data/golden/camera.safetensors: a grid of EG3D sampler inputs (horizontal_mean,
vertical_mean, radius, lookat_position, FOV) and the 25-float labels the official code makes from them.
`tests/test_camera.py` checks `balancehead.camera` against them.
"""
from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

OUT = Path(__file__).resolve().parents[2] / "tests" / "data" / "golden" / "camera.safetensors"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eg3d", required=True, type=Path, help="the eg3d/ folder of an NVlabs/eg3d checkout")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    sys.path.insert(0, str(args.eg3d.resolve()))
    from camera_utils import FOV_to_intrinsics, LookAtPoseSampler  # official code, from the checkout

    # h = pi/2 + yaw (yaw every 30 degrees, the back on both sides), v over the whole usable range
    hs = [math.pi / 2 + math.radians(y) for y in range(-180, 181, 30)]
    vs = [0.05, 0.3, math.pi / 2 - 0.45, math.pi / 2 - 0.2, math.pi / 2, math.pi / 2 + 0.2, math.pi / 2 + 0.45, 2.6, 3.1]
    # (lookat_position, radius, FOV): EG3D's default, PanoHead's origin pivot, an off-axis pivot
    setups = [((0.0, 0.0, 0.2), 2.7, 18.837), ((0.0, 0.0, 0.0), 2.7, 18.837), ((0.05, -0.1, 0.15), 3.1, 12.0)]
    rows = {k: [] for k in ("h", "v", "radius", "fov_deg", "pivot", "label")}
    for h, v, (pivot, radius, fov) in itertools.product(hs, vs, setups):
        c2w = LookAtPoseSampler.sample(h, v, torch.tensor(pivot), radius=radius)
        label = torch.cat([c2w.reshape(-1), FOV_to_intrinsics(fov).reshape(-1)])
        for k, val in (("h", h), ("v", v), ("radius", radius), ("fov_deg", fov)):
            rows[k].append(torch.tensor(val, dtype=torch.float64))
        rows["pivot"].append(torch.tensor(pivot, dtype=torch.float64))
        rows["label"].append(label.float())
    tensors = {k: torch.stack(v).contiguous() for k, v in rows.items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"source": "NVlabs/eg3d camera_utils.LookAtPoseSampler + FOV_to_intrinsics"})
    tmp.replace(args.out)
    print(f"wrote {args.out} ({len(rows['label'])} labels)")


if __name__ == "__main__":
    main()
