"""Class activation maps, Grad-CAM, weight images and gradient flow: correctness and the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from reslab.data.synthetic import BLANK, SHAPES, shapes_dataset
from reslab.errors import ConfigError, ReslabError
from reslab.explain import class_activation_maps, first_layer_images, grad_cam, layer_grad_norms
from reslab.explain.app import main as explain_main
from reslab.explain.gradcam import find_layer
from reslab.explain.pointing import pointing_game
from reslab.models import CNN, MLP, ResNet
from reslab.run import train
from tests.conftest import compose_config
from tests.data_files import write_cifar10

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# -- localisation --------------------------------------------------------------------------


def test_shapes_dataset_puts_each_shape_inside_its_box():
    data, boxes = shapes_dataset(32, image_size=20, object_size=6, noise=50, seed=1)
    assert data.images.shape == (32, 1, 20, 20) and data.labels.tolist() == [
        i % 4 for i in range(32)
    ]
    for image, label, (x0, y0, x1, y1) in zip(data.images[:, 0], data.labels, boxes.tolist()):
        bright = torch.nonzero(image >= 180)
        if label == BLANK:
            assert len(bright) == 0 and x1 == x0
            continue
        assert len(bright) >= 6  # a bar across the box
        assert (bright[:, 1] >= x0).all() and (bright[:, 1] < x1).all()
        assert (bright[:, 0] >= y0).all() and (bright[:, 0] < y1).all()


def test_pointing_game_counts_peaks_inside_boxes():
    maps = torch.zeros(4, 16, 16)
    maps[0, 0, 0] = maps[1, 15, 15] = maps[2, 4, 9] = maps[3, 0, 0] = 1.0  # rows are y
    boxes = torch.tensor([[0, 0, 4, 4], [0, 0, 4, 4], [8, 4, 12, 8], [0, 0, 0, 0]])
    result = pointing_game(maps, boxes, (16, 16))  # the last image has no object
    assert result.peaks.tolist() == [[0, 0], [15, 15], [9, 4]]
    assert result.hits.tolist() == [True, False, True] and result.score == pytest.approx(2 / 3)


def test_a_briefly_trained_gap_net_points_at_the_shape():
    torch.manual_seed(0)
    train_set, _ = shapes_dataset(1536, image_size=24, object_size=8, seed=0)
    test_set, boxes = shapes_dataset(300, image_size=24, object_size=8, seed=1)
    model = CNN((1, 24, 24), len(SHAPES) + 1, depth=4, width=8, head="gap")  # 12x12 maps
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = train_set.images.float() / 255
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        index = torch.randint(0, len(x), (64,), generator=generator)
        loss = nn.functional.cross_entropy(model(x[index]), train_set.labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    result = class_activation_maps(model, test_set.images.float() / 255, "pred")
    assert (result.predictions == test_set.labels).float().mean() > 0.9  # it did learn the task
    assert pointing_game(result.maps, boxes, (24, 24)).score >= 0.8


# -- Grad-CAM and CAM ----------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "make, layer",
    [
        (lambda: CNN((3, 12, 12), 5, depth=4, width=6, head="gap"), "features"),
        (lambda: ResNet((3, 12, 12), 5, depth=8, width=4), "layer3"),
    ],
    ids=["cnn-gap", "resnet"],
)
def test_gradcam_at_the_gap_input_is_cam_up_to_a_positive_scale(make, layer, device):
    torch.manual_seed(0)
    model = make().to(device)
    x = torch.randn(6, 3, 12, 12, device=device)
    cam = class_activation_maps(model, x, target="pred").maps
    gradcam = grad_cam(model, x, layer=layer, target="pred", relu=False).maps
    assert cam.device.type == gradcam.device.type == torch.device(device).type
    cam, gradcam = cam.double().cpu(), gradcam.double().cpu()
    scale = (cam * gradcam).sum() / (gradcam * gradcam).sum()
    assert scale > 0
    torch.testing.assert_close(cam, scale * gradcam, rtol=1e-4, atol=1e-5)
    # Grad-CAM's channel weights are w_ck / (h * w): the scale is the number of positions.
    assert scale.item() == pytest.approx(cam.shape[-1] * cam.shape[-2], rel=1e-4)


def test_gradcam_defaults_to_each_models_last_feature_maps_and_renames_old_layers():
    torch.manual_seed(0)
    resnet = ResNet((3, 12, 12), 5, depth=20, width=4)
    cnn = CNN((3, 12, 12), 5, depth=4, width=6, head="gap")
    x = torch.randn(2, 3, 12, 12)
    for model, layer in [(resnet, "layer3"), (cnn, "features")]:
        assert find_layer(model, None)[0] == layer
        torch.testing.assert_close(grad_cam(model, x).maps, grad_cam(model, x, layer=layer).maps)
    assert find_layer(resnet, "layer3.2.conv2")[1] is resnet.layer3[2].conv2
    # A name from before the stages had names points to today's (block 8 of 9 = layer3.2).
    with pytest.raises(ReslabError, match=r"features.8.conv2 is now called layer3.2.conv2"):
        find_layer(resnet, "features.8.conv2")


def test_cam_of_a_class_uses_that_class_weights():
    torch.manual_seed(0)
    model = CNN((1, 8, 8), 3, depth=3, width=4, head="gap")
    x = torch.randn(2, 1, 8, 8)
    features = model.features(x)
    result = class_activation_maps(model, x, target=2)
    expected = torch.einsum("c,nchw->nhw", model.classifier[1].weight[2], features)
    torch.testing.assert_close(result.maps, expected.detach())
    # Averaging the class map and adding the bias gives back the logit.
    logits = result.maps.mean((1, 2)) + model.classifier[1].bias[2]
    torch.testing.assert_close(logits, result.logits[:, 2])


# -- explaining leaves the model as it was -------------------------------------------------


def hooks(model: nn.Module) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
        for m in model.modules()
    )


@pytest.mark.parametrize("training", [True, False])
def test_explaining_leaves_the_model_as_it_was(training):
    torch.manual_seed(0)
    model = ResNet((3, 12, 12), 4, depth=8, width=4).train(training)
    model.layer1[0].bn1.eval()  # a mixed state must come back as it was, too
    modes = {name: m.training for name, m in model.named_modules()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(4, 3, 12, 12), torch.tensor([0, 1, 2, 3])

    class_activation_maps(model, x, target="true", labels=y)
    grad_cam(model, x, layer="layer2.0.conv1", target="pred")
    layer_grad_norms(model, [(x, y)])
    with pytest.raises(ReslabError, match="not .N, C, H, W."):
        grad_cam(model, x, layer="classifier")  # fails inside its forward hook

    assert {name: m.training for name, m in model.named_modules()} == modes
    assert hooks(model) == 0
    assert all(p.grad is None for p in model.parameters())
    for key, value in model.state_dict().items():  # BatchNorm statistics included
        assert torch.equal(value, before[key]), key


def test_layer_grad_norms_are_the_norms_of_each_weight_layers_gradient():
    torch.manual_seed(0)
    model = MLP((1, 4, 4), 3, depth=4, width=8, residual=True)
    x, y = torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1])
    norms = layer_grad_norms(model, [(x, y)])
    nn.functional.cross_entropy(model(x), y).backward()
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    torch.testing.assert_close(norms, torch.stack([m.weight.grad.norm() for m in linears]))


def test_first_layer_images_are_each_units_weights_as_an_image():
    torch.manual_seed(0)
    model = MLP((1, 6, 5), 3, depth=2, width=4)
    images = first_layer_images(model, (1, 6, 5))
    assert images.shape == (4, 1, 6, 5) and images.dtype == torch.uint8
    weight = model.features[0][0].weight.detach()
    for unit in range(4):
        assert images[unit].min() == 0 and images[unit].max() == 255
        assert images[unit].flatten().argmax() == weight[unit].argmax()
        assert images[unit].flatten().argmin() == weight[unit].argmin()


@pytest.mark.parametrize(
    "model, overrides, message",
    [
        ("mlp", [], "needs convolutional feature maps"),
        ("cnn", [], "set model.head=gap"),
        ("cnn", ["explain.method=gradcam", "explain.layer=features.9"], "explain.layer=features.9"),
    ],
)
def test_cam_timeline_refuses_a_model_it_cannot_explain_before_training(
    model, overrides, message, tmp_path
):
    cfg = compose_config(
        f"model={model}", "depth=3", "width=4", "explain.cam_every_epoch=true", *overrides
    )
    with pytest.raises(ConfigError, match=message):
        train(cfg, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["status"] == "failed" and "epochs" not in results


# -- the run folder: timeline during training, explain.py after it -------------------------


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root, per_batch=40)
    return root


@pytest.fixture(scope="module")
def cnn_run(cifar_root, tmp_path_factory) -> Path:
    """A real run folder made by train.py: a small GAP CNN with the CAM timeline on."""
    from tests.conftest import run_cli

    run_dir = tmp_path_factory.mktemp("runs") / "cnn"
    proc = run_cli(
        "dataset=cifar10",
        f"dataset.root={cifar_root}",
        "dataset.batch_size=16",
        "model=cnn",
        "model.head=gap",
        "depth=3",
        "width=4",
        "trainer=debug",
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=2",
        "explain.cam_every_epoch=true",
        "explain.n_images=4",
        "explain.grad_norms=true",
        "logger=tensorboard",
        f"hydra.run.dir={run_dir}",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


def test_cam_timeline_has_one_frame_per_epoch(cnn_run):
    epochs = json.loads((cnn_run / "results.json").read_text())["epochs"]
    assert epochs == 3
    with Image.open(cnn_run / "figures" / "cam_timeline.gif") as gif:
        assert gif.n_frames == epochs
    assert (cnn_run / "figures" / "cam_best.png").is_file()


def test_gradient_norms_are_logged_per_layer_each_epoch(cnn_run):
    with (cnn_run / "metrics.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for row in rows:
        norms = [float(row[f"grad_norm/layer_{i:02d}"]) for i in (1, 2, 3)]
        assert all(0 < v < float("inf") for v in norms)
    assert "grad_norm/layer_04" not in rows[0]  # three weight layers: two convs + classifier


def test_explain_cli_writes_cam_overlays_into_the_run(cnn_run, cli):
    figure = cnn_run / "figures" / "cam.png"
    figure.unlink(missing_ok=True)
    proc = cli(f"run={cnn_run}", "method=cam", "n=16", script="scripts/explain.py")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert str(figure) in proc.stdout
    with Image.open(figure) as image:
        assert image.width > 400 and image.height > 300


def test_explain_adds_figures_to_the_runs_tensorboard(cnn_run, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert explain_main([f"run={cnn_run}", "method=gradcam", "layer=features.0", "n=4"]) == 0
    assert (cnn_run / "figures" / "gradcam_features.0.png").is_file()
    events = EventAccumulator(str(cnn_run / "tensorboard"), size_guidance={"images": 0})
    tags = events.Reload().Tags()["images"]
    assert {"explain/cam", "explain/gradcam_features.0"} <= set(tags)


@pytest.mark.parametrize(
    "args, message",
    [
        (["method=cam", "target=9"], None),  # valid: the figure is written
        (["method=gradcam", "layer=feature.0"], "did you mean features.0"),
        (["method=gradflow"], "has none"),
        (["method=cam", "target=10"], "not a class"),
        (["method=saliency"], "choose one of cam, gradcam, weights, gradflow"),
        (["methd=cam"], "not an explain option"),
        (["checkpoint=other"], "does not exist"),
    ],
)
def test_explain_cli_errors_are_one_line(cnn_run, capsys, args, message):
    code = explain_main([f"run={cnn_run}", "n=2", *args])
    err = capsys.readouterr().err.strip()
    if message is None:
        assert code == 0 and (cnn_run / "figures" / "cam_class9.png").is_file()
        return
    assert code != 0
    assert err.startswith("error:") and len(err.splitlines()) == 1
    assert message in err


def test_explain_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert explain_main([f"run={tmp_path / 'missing'}"]) != 0
    assert "is not a folder" in capsys.readouterr().err
    assert explain_main([f"run={tmp_path}"]) != 0
    assert "not a reslab run folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def mlp_twins(cifar_root, tmp_path_factory) -> dict[str, Path]:
    """A plain MLP and its residual twin trained side by side, as a sweep leaves them."""
    sweep = tmp_path_factory.mktemp("sweep")
    runs = {}
    for model in ("mlp", "residual_mlp"):
        run_dir = sweep / model
        cfg = compose_config(
            "dataset=cifar10",
            f"dataset.root={cifar_root}",
            "dataset.batch_size=16",
            f"model={model}",
            "depth=4",
            "width=16",
            "trainer=debug",
            "trainer.max_epochs=1",
            "logger=none",
            run_dir=run_dir,
        )
        train(cfg, run_dir)
        runs[model] = run_dir
    return runs


def test_cam_on_an_mlp_points_to_weights(mlp_twins, capsys):
    assert explain_main([f"run={mlp_twins['mlp']}", "method=cam"]) != 0
    assert "use method=weights" in capsys.readouterr().err


def test_weights_method_draws_the_mlp_first_layer(mlp_twins):
    assert explain_main([f"run={mlp_twins['mlp']}", "method=weights", "n=16"]) == 0
    with Image.open(mlp_twins["mlp"] / "figures" / "weights_first_layer.png") as image:
        # 16 RGB 32x32 units in a 4x4 grid, 1-pixel gaps, drawn 4 times enlarged.
        assert image.size == (4 * (4 * 33 - 1), 4 * (4 * 33 - 1)) and image.mode == "RGB"


def test_gradflow_compares_plain_and_residual_at_init_and_trained(mlp_twins):
    assert explain_main([f"run={mlp_twins['mlp']}", "method=gradflow", "batches=2"]) == 0
    figures = mlp_twins["mlp"] / "figures"
    assert (figures / "gradient_flow.png").is_file()
    with (figures / "gradient_flow.csv").open() as f:
        rows = list(csv.DictReader(f))
    curves = {"plain, init", "residual, init", "plain, trained", "residual, trained"}
    assert set(rows[0]) == {"layer", *curves}
    assert [int(r["layer"]) for r in rows] == [1, 2, 3, 4]  # depth 4: four weight layers
    assert all(float(r[c]) > 0 for r in rows for c in curves)


@pytest.fixture(scope="module")
def resnet_twins(cifar_root, tmp_path_factory) -> dict[str, Path]:
    """A ResNet and its plain twin trained side by side, as a sweep leaves them."""
    sweep = tmp_path_factory.mktemp("resnet-sweep")
    runs = {}
    for model in ("resnet", "plain_resnet"):
        run_dir = sweep / model
        cfg = compose_config(
            "dataset=cifar10",
            f"dataset.root={cifar_root}",
            "dataset.batch_size=16",
            f"model={model}",
            "depth=8",
            "width=4",
            "trainer=debug",
            "trainer.max_epochs=1",
            "logger=none",
            run_dir=run_dir,
        )
        train(cfg, run_dir)
        runs[model] = run_dir
    return runs


def test_cam_compare_draws_the_twins_maps_of_the_same_images(resnet_twins, capsys):
    run = resnet_twins["resnet"]
    assert explain_main([f"run={run}", "method=cam", "compare=twin", "n=4", "log=false"]) == 0
    assert f"wrote {run / 'figures' / 'cam_compare.png'}" in capsys.readouterr().out
    with Image.open(run / "figures" / "cam_compare.png") as image:
        width, height = image.size
    # Three rows (the input, this run's maps, the twin's maps) of four images.
    assert width > height > 0


def test_cam_compare_refuses_what_it_cannot_draw(resnet_twins, mlp_twins, capsys):
    run = resnet_twins["resnet"]
    assert explain_main([f"run={run}", "method=cam", f"compare={mlp_twins['mlp']}"]) == 1
    assert "MLP has none; use method=weights" in capsys.readouterr().err
    assert explain_main([f"run={mlp_twins['mlp']}", "method=weights", "compare=twin"]) == 2
    assert "compare= works with method=cam or gradcam" in capsys.readouterr().err


def test_the_report_draws_each_depths_twins_cam(resnet_twins, tmp_path):
    from reslab.report.compare import main as compare

    assert compare([str(resnet_twins["resnet"].parent), "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "## Where the twins look: class activation maps" in report
    assert "(cam_d8.png)" in report and (tmp_path / "cam_d8.png").is_file()
    assert (
        compare([str(resnet_twins["resnet"].parent), "--out", str(tmp_path / "b"), "--no-cam"]) == 0
    )
    assert "class activation maps" not in (tmp_path / "b" / "report.md").read_text()
