"""Every model builds at the depths it promises, counts depth as DESIGN.md says, and refuses the rest."""

import pytest
import torch

from reslab.errors import ConfigError
from reslab.models import CNN, MLP, ResNet, count_params, weight_layer_depth

PAPER_PARAMS = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}


@pytest.mark.parametrize("depth", sorted(PAPER_PARAMS))
def test_resnet_parameter_counts_match_the_paper(depth):
    model = ResNet((3, 32, 32), 10, depth=depth)
    plain = ResNet((3, 32, 32), 10, depth=depth, residual=False)
    assert count_params(model) == PAPER_PARAMS[depth]
    assert count_params(plain) == PAPER_PARAMS[depth]
    assert weight_layer_depth(model) == depth


@pytest.mark.parametrize("depth", [2, 4, 8, 16])
def test_mlp_and_residual_twin_have_same_layers(depth):
    plain = MLP((1, 28, 28), 10, depth=depth, width=32)
    residual = MLP((1, 28, 28), 10, depth=depth, width=32, residual=True)
    assert weight_layer_depth(plain) == weight_layer_depth(residual) == depth
    assert count_params(plain) == count_params(residual)
    # Identical parameter names too: a plain checkpoint loads into its twin.
    residual.load_state_dict(plain.state_dict())


def test_residual_mlp_shortcut_changes_the_function():
    torch.manual_seed(0)
    plain = MLP((1, 8, 8), 3, depth=4, width=16)
    residual = MLP((1, 8, 8), 3, depth=4, width=16, residual=True)
    residual.load_state_dict(plain.state_dict())
    x = torch.randn(5, 1, 8, 8)
    assert not torch.allclose(plain(x), residual(x))


def test_lab_mlp_784_256_128_10():
    model = MLP((1, 28, 28), 10, hidden_sizes=[256, 128])
    shapes = [tuple(m.weight.shape) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert shapes == [(256, 784), (128, 256), (10, 128)]


def test_explicit_hidden_sizes_must_agree_with_depth():
    # Runs are named, recorded and compared by depth: it has to be the depth that is built.
    with pytest.raises(ConfigError, match=r"builds 4 weight layers; set depth=4"):
        MLP((1, 28, 28), 10, depth=3, hidden_sizes=[512, 256, 128])
    assert weight_layer_depth(MLP((1, 28, 28), 10, depth=4, hidden_sizes=[512, 256, 128])) == 4


@pytest.mark.parametrize("head,depth", [("fc", 3), ("fc", 8), ("gap", 2), ("gap", 12)])
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_cnn_depth_and_forward(head, depth, shape):
    model = CNN(shape, 10, depth=depth, width=8, head=head)
    assert weight_layer_depth(model) == depth
    assert model(torch.randn(2, *shape)).shape == (2, 10)


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: ResNet((3, 32, 32), 10, depth=21), r"6n\+2"),
        (lambda: ResNet((3, 32, 32), 10, depth=2), "20, 32, 44, 56, 110"),
        (lambda: MLP((1, 28, 28), 10, depth=5, residual=True), "even depth"),
        (lambda: MLP((1, 28, 28), 10, depth=0), "depth >= 1"),
        (lambda: CNN((1, 28, 28), 10, depth=2, head="fc"), "depth >= 3"),
    ],
)
def test_invalid_depths_name_the_valid_values(build, message):
    with pytest.raises(ConfigError, match=message):
        build()
