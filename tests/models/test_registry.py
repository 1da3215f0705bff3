"""The registry, every model's forward and backward pass, and the pretrained-weight sources."""

from __future__ import annotations

import hashlib
import math

import pytest
from helpers import without_internet
import torch
from torch import nn

from lesionlens.models import registry
from lesionlens.models.profile import count_parameters, model_cost
from lesionlens.models.registry import MODELS, ModelSpec, create_model, get_spec
from lesionlens.models.weights import WeightsNotFound, efficientnet_lite_to_timm

@pytest.mark.parametrize("name", [name for name, spec in MODELS.items() if spec.dims == 2])
def test_every_model_trains_and_predicts_for_any_class_count(name):
    """A forward and backward pass on a tiny batch: gradients reach every parameter and are finite
    (some are exactly zero at initialisation: timm zeroes the last batch-norm scale of each residual
    branch); then the timm seam (forward_features -> forward_head) at another input size."""
    size = get_spec(name).min_size  # 32 pixels for most: keeps VGG's 1.3 GMACs per image at 224 px cheap
    model = create_model(name, num_classes=3, drop_rate=0.2).train()
    out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 3)
    nn.functional.cross_entropy(out, torch.tensor([0, 2])).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.get_classifier().weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        features = model.forward_features(torch.randn(1, 3, size + 16, size + 16))
        assert model.forward_head(features).shape == (1, 3)
    assert model.get_classifier().out_features == 3


# Parameters with 1,000 classes and multiply-accumulates per 224x224 image, as the reference
# implementations publish them: torchvision's weights tables (``Weights.meta["num_params"]`` and
# ``["_ops"]``, GMACs to 3 decimals) and, for what torchvision lacks, the Keras Applications
# summaries (trainable parameters; Keras' batch norm keeps its moving statistics as non-trainable
# weights, PyTorch's as buffers).
PUBLISHED = {
    "alexnet": (61_100_840, 0.714),  # torchvision AlexNet_Weights.IMAGENET1K_V1
    "vgg16": (138_357_544, 15.470),  # torchvision VGG16_Weights.IMAGENET1K_V1
    "vgg19": (143_667_240, 19.632),  # torchvision VGG19_Weights.IMAGENET1K_V1
    "resnet18": (11_689_512, 1.814),  # torchvision ResNet18_Weights.IMAGENET1K_V1
    "resnet50": (25_557_032, 4.089),  # torchvision ResNet50_Weights.IMAGENET1K_V1
    "densenet121": (7_978_856, 2.834),  # torchvision DenseNet121_Weights.IMAGENET1K_V1
    "mobilenet_v2": (3_504_872, 0.301),  # torchvision MobileNet_V2_Weights.IMAGENET1K_V1
    "mobilenet_v3": (5_483_032, 0.217),  # torchvision MobileNet_V3_Large_Weights.IMAGENET1K_V1
    "efficientnet_b0": (5_288_548, 0.386),  # torchvision EfficientNet_B0_Weights.IMAGENET1K_V1
    "mobilenet_v1": (4_231_976, None),  # Keras applications.MobileNet: 4,231,976 trainable
    "xception": (22_855_952, None),  # Keras applications.Xception: 22,855,952 trainable
}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_parameters_and_macs_match_the_published_figures(name):
    params, gmacs = PUBLISHED[name]
    assert count_parameters(name, 1000) == params
    if gmacs is not None:
        assert round(model_cost(name, 1000, 224).macs / 1e9, 3) == gmacs


def test_inception_v3_is_torchvisions_without_the_auxiliary_classifier():
    """torchvision publishes 27,161,264 parameters for Inception v3 with its auxiliary classifier,
    which only helps training from scratch and which timm's model leaves out; and 5.713 GMACs at 299."""
    from torchvision.models.inception import InceptionAux

    with torch.device("meta"):
        aux = sum(p.numel() for p in InceptionAux(768, 1000).parameters())
    assert count_parameters("inception_v3", 1000) + aux == 27_161_264
    assert round(model_cost("inception_v3", 1000, 299).macs / 1e9, 3) == 5.713


def test_efficientnet_lite_sizes_match_the_tensorflow_release():
    """The EfficientNet-Lite README (tensorflow/tpu) lists Lite0 at 4.7M and Lite2 at 6.1M parameters."""
    assert round(count_parameters("efficientnet_lite0", 1000) / 1e6, 1) == 4.7
    assert round(count_parameters("efficientnet_lite2", 1000) / 1e6, 1) == 6.1


def test_lenet5_has_the_papers_trainable_parameters():
    """LeCun et al. 1998, section II.B: C1 156, S2 12, C3 1,516, S4 32, C5 48,120, F6 10,164."""
    model = create_model("lenet5", 10)
    layers = {name: sum(p.numel() for p in model.features[i].parameters())
              for name, i in (("C1", 0), ("S2", 2), ("C3", 4), ("S4", 6), ("C5", 8))}
    assert layers == {"C1": 156, "S2": 12, "C3": 1_516, "S4": 32, "C5": 48_120}
    assert sum(p.numel() for p in model.pre_logits.parameters()) == 10_164
    assert sum(p.numel() for p in model.parameters()) == 156 + 12 + 1_516 + 32 + 48_120 + 10_164 + 84 * 10 + 10
    # at the paper's 32x32 input every map has the paper's size, and C5 is 1x1
    x = torch.randn(1, 3, 32, 32)
    assert model.forward_features(x).shape == (1, 120, 1, 1)


def test_lenet5_c3_reads_only_the_maps_of_its_connection_table():
    """The gradient of C3 map j with respect to the S2 maps is non-zero exactly on table row j."""
    from lesionlens.models.lenet import C3_TABLE, PartialConv

    conv = PartialConv(C3_TABLE)
    x = torch.randn(1, 6, 10, 10, requires_grad=True)
    out = conv(x)
    for j, row in enumerate(C3_TABLE):
        (grad,) = torch.autograd.grad(out[0, j].sum(), x, retain_graph=True)
        reads = {c for c in range(6) if grad[0, c].abs().sum() > 0}
        assert reads == set(row), j


def test_simple_cnn_parameters_by_hand():
    """Four blocks of two 3x3 conv (no bias) + batch norm, widths 32-64-128-256, then a dense layer."""
    widths, prev, expected = (32, 64, 128, 256), 3, 0
    for w in widths:
        expected += 9 * prev * w + 2 * w + 9 * w * w + 2 * w
        prev = w
    expected += 256 * 7 + 7
    assert count_parameters("simple_cnn", 7) == expected


def test_too_small_inputs_are_refused_with_the_minimum():
    with pytest.raises(ValueError, match="inception_v3 needs inputs of at least 75 pixels"):
        model_cost("inception_v3", 2, 64)
    with pytest.raises(ValueError, match="at least 32x32"):
        create_model("lenet5", 2)(torch.randn(1, 3, 28, 28))


def test_reset_classifier_keeps_the_seam():
    model = create_model("tiny_cnn", 3)
    model.reset_classifier(7)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)


def test_names_are_unique_and_unknown_names_are_refused():
    spec = get_spec("tiny_cnn")
    with pytest.raises(ValueError, match="registered twice"):
        registry._index([spec, ModelSpec("tiny_cnn", spec.build, "again", spec.preprocessing)])
    with pytest.raises(ValueError, match="unknown model 'vgg99'.*efficientnet_lite0"):
        create_model("vgg99", 2)


def test_pretrained_preprocessing_travels_with_the_weights():
    assert get_spec("efficientnet_lite0").preprocessing_for(True).mean == (0.5, 0.5, 0.5)
    assert get_spec("efficientnet_lite2").preprocessing_for(True).image_size == 260
    assert get_spec("mobilenet_v2").preprocessing_for(True).interpolation == "bilinear"
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_model("simple_cnn", 2, pretrained=True)


def test_a_local_file_with_the_wrong_sha256_is_refused(tmp_path):
    fake = tmp_path / "tf_efficientnet_lite0.pth"
    torch.save({"x": torch.zeros(1)}, fake)
    with pytest.raises(WeightsNotFound, match="does not match the known tf_efficientnet_lite0.pth"):
        create_model("efficientnet_lite0", 2, pretrained=True, weights=tmp_path)
    with pytest.raises(WeightsNotFound, match="no such weights file"):
        create_model("efficientnet_lite0", 2, pretrained=True, weights=tmp_path / "nope.pth")


@pytest.fixture
def local_lite0(tmp_path, monkeypatch):
    """Random EfficientNet-Lite0 'ImageNet' weights in a local file the registry trusts."""
    source = create_model("efficientnet_lite0", 1000)
    path = tmp_path / "tf_efficientnet_lite0.pth"
    torch.save(source.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = get_spec("efficientnet_lite0")
    patched = ModelSpec(spec.name, spec.build, spec.description, spec.preprocessing,
                        weights=type(spec.weights)(spec.weights.filename, digest, spec.weights.preprocessing,
                                                   spec.weights.description, hub=False),
                        timm_name=spec.timm_name)
    monkeypatch.setitem(registry.MODELS, "efficientnet_lite0", patched)
    return source, tmp_path


def test_a_verified_local_file_is_loaded(local_lite0):
    source, folder = local_lite0
    model = create_model("efficientnet_lite0", 3, pretrained=True, weights=folder)
    assert "sha256 verified" in model.pretrained_source
    assert torch.equal(model.conv_stem.weight, source.conv_stem.weight)
    assert model.get_classifier().out_features == 3


@pytest.mark.parametrize("head", ["linear", "avg", "mlp"])
def test_the_new_last_layer_of_a_pretrained_network_starts_at_zero(local_lite0, head):
    """Every class starts at the same score: the first loss is ln(classes), not timm's few-class
    init's (its EfficientNet classifier is drawn in +-1/sqrt(classes), sized for 1,000)."""
    _, folder = local_lite0
    model = create_model("efficientnet_lite0", 7, pretrained=True, weights=folder, head=head, image_size=64).eval()
    logits = model(torch.randn(4, 3, 64, 64))
    assert torch.count_nonzero(model.get_classifier().weight) == 0
    assert torch.allclose(logits, torch.zeros_like(logits))
    loss = torch.nn.functional.cross_entropy(model.train()(torch.randn(4, 3, 64, 64)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert loss.item() == pytest.approx(math.log(7), abs=1e-5)
    assert model.get_classifier().weight.grad.abs().sum() > 0  # it learns from the first step
    scratch = create_model("efficientnet_lite0", 7, head=head, image_size=64)
    assert torch.count_nonzero(scratch.get_classifier().weight) > 0  # from scratch: the architecture's init


def test_efficientnet_lite_key_conversion():
    """Names the flat ``_blocks.N`` layout would give the timm model's tensors, then convert back."""
    model = create_model("efficientnet_lite0", 1000)
    target = model.state_dict()
    inverse_top = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1",
                   "classifier": "_fc"}
    ds = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"}
    ir = {"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv", "bn2": "_bn1",
          "conv_pwl": "_project_conv", "bn3": "_bn2"}
    flat = {(s, j): n for n, (s, j) in enumerate((s, j) for s, st in enumerate(model.blocks) for j in range(len(st)))}
    source = {}
    for key, value in target.items():
        parts = key.split(".")
        if parts[0] == "blocks":
            s, j = int(parts[1]), int(parts[2])
            names = ds if s == 0 else ir
            source[".".join(["_blocks", str(flat[(s, j)]), names[parts[3]], *parts[4:]])] = value
        else:
            source[".".join([inverse_top[parts[0]], *parts[1:]])] = value
    converted = efficientnet_lite_to_timm(source, model)
    assert converted.keys() == target.keys()
    assert all(torch.equal(converted[k], target[k]) for k in target)


def test_weights_only_the_hub_has_fail_with_a_clear_message_offline(monkeypatch):
    """No local file, no package-registry copy: the hub is the only source, and without internet
    (simulated here) the error says what was tried and what to do."""
    without_internet(monkeypatch)
    with pytest.raises(WeightsNotFound, match="(?s)timm hub resnet18: OSError: no internet.*only from timm's hub.*--no-pretrained"):
        create_model("resnet18", 2, pretrained=True)
