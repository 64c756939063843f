"""Standard 3D Gaussian Splatting `.ply` files (the layout of Kerbl et al.'s reference code), which common
splat viewers (SuperSplat, antimatter15/splat, gsplat's viewer, ...) open.

One `vertex` element, binary little-endian float32 properties in this order:
x y z, nx ny nz (zeros), f_dc_0..2 (degree-0 spherical-harmonic coefficients), f_rest_0.. (higher bands,
3 * ((degree+1)^2 - 1) of them, zeros here: our colours are view-independent), opacity (logit),
scale_0..2 (log of the standard deviations), rot_0..3 (quaternion, w first).
Colour <-> SH DC: rgb = 0.5 + C0 * f_dc with C0 = 1 / (2 sqrt(pi)) -- what viewers evaluate at degree 0.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from balancehead import fileio

from .gaussians import Gaussians

SH_C0 = 0.28209479177387814
_TYPES = {"float": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8", "uchar": "u1", "uint8": "u1",
          "char": "i1", "int8": "i1", "short": "<i2", "ushort": "<u2", "int": "<i4", "int32": "<i4",
          "uint": "<u4", "uint32": "<u4"}


def property_names(sh_degree: int = 3) -> list[str]:
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"] + [f"f_rest_{i}" for i in range(n_rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def encode(g: Gaussians, sh_degree: int = 3) -> bytes:
    """One unbatched Gaussian set (N, ...) -> the bytes of a binary 3DGS .ply."""
    if g.means.dim() != 2:
        raise ValueError(f"ply export takes one head (N, 3 means), got means of shape {tuple(g.means.shape)}")
    t = lambda x: x.detach().to("cpu", torch.float64).numpy()  # noqa: E731
    n = len(g)
    opac = np.clip(t(g.opacities), 1e-6, 1 - 1e-6)
    quats = t(g.quats)
    columns = {"x": t(g.means)[:, 0], "y": t(g.means)[:, 1], "z": t(g.means)[:, 2],
               "opacity": np.log(opac / (1 - opac))}
    dc = (t(g.colors) - 0.5) / SH_C0
    scales = np.log(np.maximum(t(g.scales), 1e-12))
    quats = quats / np.linalg.norm(quats, axis=1, keepdims=True)
    for i in range(3):
        columns[f"f_dc_{i}"], columns[f"scale_{i}"] = dc[:, i], scales[:, i]
    for i in range(4):
        columns[f"rot_{i}"] = quats[:, i]
    names = property_names(sh_degree)
    table = np.zeros(n, dtype=[(name, "<f4") for name in names])
    for name, column in columns.items():
        table[name] = column
    header = "\n".join(["ply", "format binary_little_endian 1.0", f"element vertex {n}"]
                       + [f"property float {name}" for name in names] + ["end_header"]) + "\n"
    return header.encode("ascii") + table.tobytes()


def write_ply(path, g: Gaussians, sh_degree: int = 3) -> None:
    """Atomic write of one head as a standard 3DGS .ply."""
    fileio.write_bytes(Path(path), encode(g, sh_degree))


def read_table(data: bytes) -> np.ndarray:
    """The `vertex` element of a binary little-endian or ASCII .ply as a numpy structured array (other elements
    are allowed only after it)."""
    end = data.find(b"end_header\n")
    if not data.startswith(b"ply\n") or end < 0:
        raise ValueError("not a .ply file (missing 'ply' magic or 'end_header')")
    lines = data[:end].decode("ascii").splitlines()[1:]
    fmt, count, fields, element = None, 0, [], None
    for line in lines:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            element = words[1]
            if element == "vertex":
                count = int(words[2])
        elif words[0] == "property" and element == "vertex":
            if words[1] == "list":
                raise ValueError("list properties in the vertex element are not supported")
            if words[1] not in _TYPES:
                raise ValueError(f"unknown .ply property type {words[1]!r}")
            fields.append((words[2], _TYPES[words[1]]))
    body = data[end + len(b"end_header\n"):]
    dtype = np.dtype(fields)
    if fmt == "binary_little_endian":
        return np.frombuffer(body, dtype=dtype, count=count)
    if fmt == "ascii":
        rows = np.loadtxt(body.decode("ascii").splitlines()[:count], ndmin=2)
        table = np.zeros(count, dtype=dtype)
        for i, (name, _) in enumerate(fields):
            table[name] = rows[:, i]
        return table
    raise ValueError(f"unsupported .ply format {fmt!r} (binary_little_endian or ascii)")


def decode(data: bytes) -> Gaussians:
    """A 3DGS .ply (bytes) -> Gaussians with activations applied (float32; higher SH bands are ignored)."""
    table = read_table(data)
    missing = [n for n in property_names(0) if n not in table.dtype.names and not n.startswith("n")]
    if missing:
        raise ValueError(f"not a 3DGS .ply: missing properties {missing}")
    col = lambda *names: torch.from_numpy(np.stack([table[n].astype(np.float32) for n in names], -1))  # noqa: E731
    quats = col("rot_0", "rot_1", "rot_2", "rot_3")
    return Gaussians(col("x", "y", "z"), quats / quats.norm(dim=-1, keepdim=True),
                     torch.exp(col("scale_0", "scale_1", "scale_2")), torch.sigmoid(col("opacity")[:, 0]),
                     0.5 + SH_C0 * col("f_dc_0", "f_dc_1", "f_dc_2"))


def read_ply(path) -> Gaussians:
    return decode(Path(path).read_bytes())
