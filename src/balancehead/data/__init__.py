"""The packed dataset format: tar shards of PNGs, a parquet manifest, safetensors condition tables,
a streaming training reader, EG3D export and the dataset card.

Heavy pieces (torch reader, matplotlib card) are imported from their modules, not here, so that
`import balancehead.data` stays cheap for stages that only write shards or manifests.
"""
from balancehead.data.conditions import ConditionTable, load_conditions, save_conditions
from balancehead.data.manifest import (CARD_DIR, CONDITIONS_FILE, MANIFEST_FILE, ROLES, SHARDS_DIR,
                                       VIEW_CONDITIONS_FILE, YAW_BIN_LABELS, read_manifest, write_manifest,
                                       yaw_bin, yaw_bins)
from balancehead.data.shards import ShardWriter, iter_shard

__all__ = [
    "CARD_DIR", "CONDITIONS_FILE", "MANIFEST_FILE", "ROLES", "SHARDS_DIR", "VIEW_CONDITIONS_FILE",
    "YAW_BIN_LABELS", "ConditionTable", "ShardWriter", "iter_shard", "load_conditions", "read_manifest",
    "save_conditions", "write_manifest", "yaw_bin", "yaw_bins",
]
