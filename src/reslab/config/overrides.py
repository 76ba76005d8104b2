"""Command-line overrides as Hydra spells them (``key=value``, ``+key=value``, ``~key``), and
the one list of those that say where or how a run executes rather than what it trains."""

from omegaconf import OmegaConf

# Left out of job folder names (configs/train.yaml reads this list through the resolver
# below), of run and dashboard names, and of the report's settings.
PLACEMENT_KEYS = (
    "logger",
    "dataset.root",
    "dataset.download",
    "dataset.path",
    "dataset.cache_dir",
    "trainer.device",
    "trainer.progress",
    "resume",
)
PLACEMENT_RESOLVER = "reslab_placement_keys"


def override_key(arg: str) -> str:
    """The key an override sets: ``+trainer.grad_clip=1`` -> ``trainer.grad_clip``."""
    return arg.split("=", 1)[0].lstrip("+~")


def is_placement(key: str) -> bool:
    """Whether an override with this key only places the run (a path, a device, a logger)."""
    return key.startswith("hydra") or any(
        key == k or key.startswith(f"{k}.") for k in PLACEMENT_KEYS
    )


if not OmegaConf.has_resolver(PLACEMENT_RESOLVER):
    OmegaConf.register_new_resolver(PLACEMENT_RESOLVER, lambda: list(PLACEMENT_KEYS))
