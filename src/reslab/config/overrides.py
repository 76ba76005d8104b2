"""Command-line overrides as Hydra spells them: ``key=value``, ``+key=value``, ``~key``."""


def override_key(arg: str) -> str:
    """The key an override sets: ``+trainer.grad_clip=1`` -> ``trainer.grad_clip``."""
    return arg.split("=", 1)[0].lstrip("+~")
