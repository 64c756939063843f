"""Merge a preset (a partial params.yaml, e.g. presets/paper_data.yaml) into params.yaml.

    python scripts/apply_preset.py presets/paper_data.yaml [--params params.yaml] [--dry-run]

The preset's keys replace the same keys of params.yaml (nested sections are merged key by key, lists and
scalars replaced); every other key and all comments stay. The result is validated like any params.yaml
(an unknown key or a bad value stops here, naming it) before params.yaml is replaced atomically.
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap


def merge(base: CommentedMap, preset: dict) -> None:
    """Key by key into nested sections; a key params.yaml lacks is added (free-form maps such as
    workflow.resources take new keys; anywhere else validation refuses it, naming it)."""
    for key, value in preset.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value


def apply(preset_path: Path, params_path: Path, dry_run: bool = False) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from balancehead.fileio import write_text
    from balancehead.params import load_params

    yaml = YAML()                      # round trip: comments and key order survive
    yaml.width = 4096
    params = yaml.load(params_path.read_text(encoding="utf-8"))
    preset = YAML(typ="safe").load(preset_path.read_text(encoding="utf-8")) or {}
    merge(params, preset)
    buf = io.StringIO()
    yaml.dump(params, buf)
    text = buf.getvalue()
    check = params_path.parent / f".{params_path.name}.preset-check.yaml"
    check.write_text(text, encoding="utf-8")
    try:
        load_params(check)             # validated before anything is replaced
    finally:
        check.unlink()
    if not dry_run:
        write_text(params_path, text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("preset", type=Path)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--dry-run", action="store_true", help="validate and print the merged params, change nothing")
    args = ap.parse_args(argv)
    text = apply(args.preset, args.params, args.dry_run)
    if args.dry_run:
        print(text, end="")
    else:
        print(f"merged {args.preset} into {args.params}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
