"""Every config key reslab ships has a type and range check, and every shipped option passes it."""

import pytest

from reslab.cli import GROUPS
from reslab.config.schema import RULES, SKIPPED, leaf_keys
from reslab.config.validate import validate_config
from reslab.errors import ConfigError

from .conftest import CONFIG_DIR, compose_config

OPTIONS = [
    (group, path.stem) for group in GROUPS for path in sorted((CONFIG_DIR / group).glob("*.yaml"))
]


@pytest.mark.parametrize("group, option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_key_of_every_option_has_a_rule_and_the_option_passes_it(group, option):
    cfg = compose_config(f"{group}={option}")
    unchecked = [
        k for k in leaf_keys(cfg) if k not in RULES and k.rsplit(".", 1)[-1] not in SKIPPED
    ]
    assert not unchecked, f"{group}={option}: keys without a rule in config/schema.py: {unchecked}"
    validate_config(cfg)


@pytest.mark.parametrize(
    "override, message",
    [
        ("width=0", "width=0 must be a whole number >= 1"),
        ("depth=2.5", "depth=2.5 must be a whole number >= 1"),
        ("model=cnn model.dropout=1.5", "model.dropout=1.5 must be a number in [0, 1)"),
        ("model=cnn model.head=pool", "model.head='pool' must be one of fc, gap"),
        ("optimizer.betas=[0.9]", "optimizer.betas=[0.9] must be a list of two numbers"),
        ("optimizer.betas=[0.9,x]", "optimizer.betas=[0.9,'x'] must be a list of two numbers"),
        ("optimizer=sgd optimizer.nesterov=yes", "optimizer.nesterov='yes' must be true or false"),
        (
            "scheduler=multistep scheduler.milestones=[a,b]",
            "scheduler.milestones=['a','b'] must be a list of whole numbers",
        ),
        ("scheduler=multistep scheduler.milestones=[150,100]", "in increasing order"),
        ("scheduler=multistep scheduler.milestones=5", "scheduler.milestones=5 must be a list"),
        ("scheduler=step scheduler.gamma=0", "scheduler.gamma=0 must be a number > 0"),
        (
            "scheduler=onecycle scheduler.pct_start=1",
            "scheduler.pct_start=1 must be a number in (0, 1)",
        ),
        (
            "scheduler=cosine scheduler.T_max=0",
            "scheduler.T_max=0 must be a whole number >= 1, or null",
        ),
        ("trainer.max_steps=0", "trainer.max_steps=0 must be a whole number >= 1, or null"),
        ("trainer.early_stopping.min_delta=-1", "min_delta=-1 must be a number >= 0"),
        ("trainer.device=tpu", "trainer.device='tpu' must be auto, cpu, cuda"),
        ("trainer.grad_clip=0", "trainer.grad_clip=0 must be a number > 0, or null"),
        ("dataset.augment.hflip=1", "dataset.augment.hflip=1 must be true or false"),
        ("dataset.train_size=0", "dataset.train_size=0 must be a whole number >= 1, or null"),
        ("logger=wandb logger.wandb.mode=cloud", "logger.wandb.mode='cloud' must be one of online"),
        ("explain.frame_ms=0", "explain.frame_ms=0 must be a whole number >= 1"),
        ("seed=-1", "seed=-1 must be a whole number >= 0"),
        ("tags=[a,'']", "tags=['a',''] must be a list of names"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as caught:
        validate_config(compose_config(*override.split()))
    assert str(caught.value).startswith(message) or message in str(caught.value), caught.value
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "override",
    ["trainer.precision=32", "explain.target=true", "trainer.device=cuda:1", "optimizer.lr=1"],
)
def test_values_the_command_line_types_differently_still_pass(override):
    validate_config(compose_config(override))
