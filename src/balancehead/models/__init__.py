"""The 3D-aware GAN: generator (five representations), renderer, discriminators, checkpoints."""
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import REPRESENTATIONS, DiscriminatorConfig, GeneratorConfig
from .discriminator import Discriminator
from .generator import Generator, GeneratorOutput
from .label_hooks import drop_labels, shuffle_columns, shuffle_rows
from .mesh import extract_mesh

__all__ = [
    "CheckpointError", "Discriminator", "DiscriminatorConfig", "Generator", "GeneratorConfig", "GeneratorOutput",
    "REPRESENTATIONS", "drop_labels", "extract_mesh", "load_checkpoint", "save_checkpoint", "shuffle_columns",
    "shuffle_rows",
]
