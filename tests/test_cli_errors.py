"""Bad input from the command line: one line that says what to do, a non-zero exit, no traceback."""

import pytest

CASES = [
    (["model=foo"], "model=foo is not an option"),
    (["dataset=cifar100"], "choose one of: cifar10, fashion_mnist, mnist"),
    (["trainer.max_epoch=5"], "did you mean trainer.max_epochs?"),
    (["model=resnet", "depth=21"], "valid for model resnet"),
    (["model=residual_mlp", "depth=5"], "even depth"),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1 must be > 0"),
    (["optimizer.lr=abc"], "optimizer.lr='abc' is not a number"),
    (["dataset.val_fraction=1.5"], "dataset.val_fraction=1.5 must be strictly between 0 and 1"),
    (["dataset.batch_size=0"], "dataset.batch_size=0 must be a positive whole number"),
    (["trainer.precision=fp8"], "trainer.precision='fp8' is invalid"),
]


@pytest.mark.parametrize("args,message", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_bad_config_is_one_clear_line(args, message, cli, tmp_path):
    proc = cli(
        *args, f"hydra.run.dir={tmp_path / 'run'}", "trainer=debug", "dataset.download=false"
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert message in errors[0]


def test_cuda_requested_without_gpu(cli, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    proc = cli("trainer.device=cuda", f"hydra.run.dir={tmp_path / 'run'}", "dataset.download=false")
    assert proc.returncode != 0
    assert "no CUDA GPU; use trainer.device=auto or cpu" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_lists_groups_and_options(cli):
    proc = cli("--help")
    assert proc.returncode == 0
    assert "model: cnn, mlp, residual_mlp, resnet" in proc.stdout
    assert "scheduler: cosine, multistep, none, onecycle, plateau, step" in proc.stdout
