"""Every model builds at the depths it promises, counts depth as DESIGN.md says, and refuses the rest."""

import pytest
import torch

from reslab.errors import ConfigError, ReslabError
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


@pytest.mark.parametrize("depth", [3, 5, 7])
def test_plain_mlp_of_any_depth_is_built_of_the_residual_twins_blocks(depth):
    plain = MLP((1, 8, 8), 10, depth=depth, width=16)
    twin = MLP((1, 8, 8), 10, depth=depth + 1, width=16, residual=True)
    pairs = [type(m).__name__ for m in plain.features]
    assert pairs == ["LinearUnit", *["ResidualPair"] * ((depth - 2) // 2), "LinearUnit"]
    assert [type(m).__name__ for m in twin.features][:-1] == pairs[:-1]
    assert weight_layer_depth(plain) == depth


@pytest.mark.parametrize("norm", [None, "batch"])
def test_an_odd_depth_mlp_saved_with_the_old_single_layer_layout_still_loads(norm):
    from reslab.models.mlp import LinearUnit

    class OldMLP(torch.nn.Module):  # depth 7: input layer, 5 single hidden layers, classifier
        def __init__(self) -> None:
            super().__init__()
            self.flatten = torch.nn.Flatten()
            units = [LinearUnit(64, 16, norm, 0.0)]
            units += [LinearUnit(16, 16, norm, 0.0) for _ in range(5)]
            self.features = torch.nn.Sequential(*units)
            self.classifier = torch.nn.Linear(16, 3)

        def forward(self, x):
            return self.classifier(self.features(self.flatten(x)))

    torch.manual_seed(0)
    old = OldMLP().eval()
    with torch.no_grad():  # every weight and norm statistic distinct, so a mix-up shows
        for value in old.state_dict().values():
            if value.is_floating_point():
                value.uniform_(0.5, 1.5)
    new = MLP((1, 8, 8), 3, depth=7, width=16, norm=norm).eval()
    new.load_state_dict(old.state_dict())
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(new(x), old(x))


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


@pytest.mark.parametrize("model", ["cnn", "resnet", "mlp"])
def test_every_model_takes_images_that_are_not_square(model):
    # An image folder kept at its own size, or a tensor file, may hold 8x12 images.
    shape = (3, 8, 12)
    net = {
        "cnn": lambda: CNN(shape, 5, depth=4, width=4),
        "resnet": lambda: ResNet(shape, 5, depth=8, width=4),
        "mlp": lambda: MLP(shape, 5, depth=3, width=8),
    }[model]()
    assert net(torch.randn(2, *shape)).shape == (2, 5)


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


def test_resnet_names_its_stages_as_torchvision_does():
    model = ResNet((3, 32, 32), 10, depth=20)
    names = ["stem", "layer1", "layer2", "layer3", "pool", "classifier"]
    assert [name for name, _ in model.named_children()] == names
    assert [len(stage) for stage in (model.layer1, model.layer2, model.layer3)] == [3, 3, 3]
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[:3] == ["stem.0", "layer1.0.conv1", "layer1.0.conv2"]
    assert convs[-1] == "layer3.2.conv2"


def old_layout(model: ResNet) -> torch.nn.Module:
    """The same weights as a ResNet before its stages had names: every block in one
    ``features`` Sequential, so its state dict has the old ``features.<i>`` keys."""
    old = torch.nn.Module()
    old.stem = model.stem
    old.features = torch.nn.Sequential(*model.layer1, *model.layer2, *model.layer3)
    old.pool, old.classifier = model.pool, model.classifier
    return old


@pytest.mark.parametrize("residual", [True, False])
def test_resnet_loads_weights_saved_with_the_old_names(residual):
    torch.manual_seed(0)
    trained = ResNet((3, 16, 16), 10, depth=14, width=4, residual=residual)
    for buffer in trained.buffers():  # running statistics that differ from a fresh model's
        buffer.add_(torch.rand_like(buffer.float()).to(buffer.dtype))
    state = old_layout(trained).state_dict()
    assert "features.5.conv2.weight" in state and not any(k.startswith("layer") for k in state)
    torch.manual_seed(1)
    fresh = ResNet((3, 16, 16), 10, depth=14, width=4, residual=residual)
    fresh.load_state_dict(state)  # strict: every key found its new name
    x = torch.randn(3, 3, 16, 16)
    assert torch.equal(fresh.eval()(x), trained.eval()(x))
    assert torch.equal(fresh.layer3[1].conv2.weight, state["features.5.conv2.weight"])
    # Under a wrapper's prefix (torch.compile's _orig_mod., DDP's module.) as well.
    twin = ResNet((3, 16, 16), 10, depth=14, width=4, residual=residual)
    wrapper = torch.nn.ModuleDict({"module": twin})
    wrapper.load_state_dict({f"module.{k}": v for k, v in state.items()})
    assert torch.equal(wrapper["module"].eval()(x), fresh(x))


def test_old_resnet_weights_of_another_depth_are_refused_in_one_line():
    state = old_layout(ResNet((3, 16, 16), 10, depth=14, width=4)).state_dict()
    with pytest.raises(ReslabError, match=r"depth 14 .* this model has depth 20") as info:
        ResNet((3, 16, 16), 10, depth=20, width=4).load_state_dict(state)
    assert len(str(info.value).splitlines()) == 1
