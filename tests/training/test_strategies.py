"""The transfer-learning strategies: what trains when, frozen batch norm, the card, reloading."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from helpers import reloaded_matches_saved

from lesionlens.config import ConfigError, load_config
from lesionlens.models import registry
from lesionlens.models.freeze import set_trainable
from lesionlens.models.registry import ModelSpec, create_model, get_spec
from lesionlens.models.weights import PretrainedWeights
from lesionlens.training.fit import train
from lesionlens.training.module import Classifier
from lesionlens.training.strategies import check_strategy, plan_strategy


def _cfg(name="efficientnet_lite0", **values):
    overrides = {"model.name": name}
    overrides.update(values)
    return load_config(overrides=overrides)


def _plan(name="efficientnet_lite0", head="linear", **values):
    cfg = _cfg(name, **{"model.head": head, **values})
    model = create_model(name, 3, head=head, image_size=64)
    return model, plan_strategy(model, cfg)


def test_efficientnet_blocks_are_its_stem_and_seven_stages():
    _, plan = _plan()
    assert plan.blocks.names == ["stem"] + [f"stage {i}" for i in range(1, 8)] + ["top"]
    assert plan.blocks.params[0] == ["conv_stem.weight", "bn1.weight", "bn1.bias"]
    assert plan.blocks.top == ["classifier.weight", "classifier.bias"]
    assert "conv_head.weight" in plan.blocks.params[-2]  # the 1x1 head convolution is the last stage's


def test_baseline_trains_only_the_last_layer_and_shallow_the_whole_top_model():
    model, plan = _plan("vgg16", **{"train.strategy": "baseline"})
    assert plan.trainable_at(5) == {"head.fc.weight", "head.fc.bias"}
    assert plan.schedule(3) == {"0": ["last layer"]}
    model, plan = _plan("vgg16", **{"train.strategy": "shallow"})
    assert plan.trainable_at(0) == {f"pre_logits.fc{i}.{w}" for i in (1, 2) for w in ("weight", "bias")} | {
        "head.fc.weight", "head.fc.bias"}
    model, plan = _plan("vgg16", head="max", **{"train.strategy": "shallow"})
    assert plan.trainable_at(0) == {"head.fc.weight", "head.fc.bias"}


def test_deep_unfreezes_one_block_per_period_from_the_output_with_decaying_rates():
    model, plan = _plan(head="avg", **{"train.strategy": "deep", "train.unfreeze_every": 2, "train.lr_decay": 0.5})
    blocks = plan.blocks
    assert plan.trainable_at(0) == plan.trainable_at(1) == set(blocks.top)
    assert plan.trainable_at(2) == set(blocks.top) | set(blocks.params[-2])
    assert plan.trainable_at(4) == set(blocks.top) | set(blocks.params[-2]) | set(blocks.params[-3])
    assert plan.trainable_at(100) == {n for n, _ in model.named_parameters()}
    schedule = plan.schedule(6)
    assert schedule == {"0": ["top"], "2": ["stage 7", "top"], "4": ["stage 6", "stage 7", "top"]}
    scale = plan.lr_scale()
    assert scale[blocks.params[-2][0]] == 0.5 and scale[blocks.params[-3][0]] == 0.25
    assert scale[blocks.params[0][0]] == 0.5 ** 8  # the stem is 8 blocks below the top
    assert blocks.top[0] not in scale  # the top model learns at lr


def test_the_optimizer_holds_every_block_deep_will_open_at_its_own_rate():
    model, plan = _plan(head="avg", **{"train.strategy": "deep", "train.lr": 0.01})
    set_trainable(model, plan.trainable_at(0))
    from lesionlens.config import TrainConfig
    from lesionlens.data.images import Preprocessing

    module = Classifier(model, TrainConfig(strategy="deep", lr=0.01, logit_adjustment=0.0), Preprocessing(), None, 1,
                        optimized=plan.optimized(), lr_scale=plan.lr_scale())
    optimizer = module.configure_optimizers()["optimizer"]
    lr_of = {id(p): g["initial_lr"] for g in optimizer.param_groups for p in g["params"]}  # before warm-up
    named = dict(model.named_parameters())
    assert len(lr_of) == len(named)
    assert lr_of[id(named["head.fc.weight"])] == pytest.approx(0.01)
    assert lr_of[id(named["backbone.conv_stem.weight"])] == pytest.approx(0.01 * 0.5 ** 8)


def test_full_with_frozen_stages_freezes_the_stem_and_the_first_stages():
    model, plan = _plan(**{"model.frozen_stages": 2})
    frozen = {n for n, _ in model.named_parameters()} - plan.trainable_at(0)
    assert frozen == set(plan.blocks.params[0]) | set(plan.blocks.params[1]) | set(plan.blocks.params[2])
    assert plan.schedule(4) == {"0": [f"stage {i}" for i in range(3, 8)] + ["top"]}


def test_frozen_batch_norm_keeps_its_statistics_through_training_mode():
    model = create_model("simple_cnn", 3)
    _, plan = _plan("simple_cnn", head="linear", **{"model.pretrained": False, "model.frozen_stages": 2})
    set_trainable(model, plan.trainable_at(0))
    from lesionlens.config import TrainConfig
    from lesionlens.data.images import Preprocessing

    module = Classifier(model, TrainConfig(logit_adjustment=0.0), Preprocessing(), None, 1).train()
    stem_bn, last_bn = model.features[0][1], model.features[3][1]
    before = stem_bn.running_mean.clone(), last_bn.running_mean.clone()
    model(torch.randn(4, 3, 32, 32) + 3)
    assert not stem_bn.training and last_bn.training
    assert torch.equal(stem_bn.running_mean, before[0])
    assert not torch.equal(last_bn.running_mean, before[1])
    module.train()  # Lightning does this after each validation
    assert not stem_bn.training


@pytest.mark.parametrize("values, message", [
    ({"train.strategy": "deep", "model.pretrained": False}, "needs pretrained weights"),
    ({"train.strategy": "shallow", "model.name": "simple_cnn"}, "simple_cnn has none"),
    ({"train.strategy": "scratch"}, "add --no-pretrained"),
    ({"train.strategy": "baseline", "model.head": "avg"}, "is strategy 'shallow'"),
    ({"train.strategy": "features", "model.head": "mlp"}, "use head linear, avg or max"),
    ({"train.strategy": "shallow", "model.frozen_stages": 2}, "frozen_stages applies to strategy 'full'"),
])
def test_meaningless_combinations_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        check_strategy(_cfg(**values))


def test_unknown_strategy_and_head_names_are_refused():
    with pytest.raises(ConfigError, match="train.strategy must be one of"):
        _cfg(**{"train.strategy": "medium"})
    with pytest.raises(ConfigError, match="model.head must be one of"):
        _cfg(**{"model.head": "gap"})


# --- end to end, on generated images, with a tiny CNN given "pretrained" weights from a local file


@pytest.fixture(scope="module")
def pretrained_tiny(tmp_path_factory):
    """tiny_cnn with verified local weights (random, but fixed): what strategies need from ImageNet."""
    from helpers import write_class_folder

    root = tmp_path_factory.mktemp("data")
    write_class_folder(root)
    torch.manual_seed(1)
    source = create_model("tiny_cnn", 1000)
    weights = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save(source.state_dict(), weights)
    spec = get_spec("tiny_cnn")
    with_weights = ModelSpec(spec.name, spec.build, spec.description, spec.preprocessing,
                             weights=PretrainedWeights("tiny.pth", hashlib.sha256(weights.read_bytes()).hexdigest(),
                                                       spec.preprocessing, "test weights", hub=False))
    mp = pytest.MonkeyPatch()
    mp.setitem(registry.MODELS, "tiny_cnn", with_weights)
    yield root, weights, source.state_dict()
    mp.undo()


def _train_cfg(root, weights, **values):
    overrides = {"data.path": str(root), "data.num_workers": 0, "model.name": "tiny_cnn", "model.weights": str(weights),
                 "model.image_size": 32, "train.epochs": 3, "train.batch_size": 8, "train.warmup_epochs": 0.0,
                 "train.lr": 0.01}
    overrides.update(values)
    return load_config(overrides=overrides)


def test_shallow_never_moves_the_backbone_nor_its_batch_norm(pretrained_tiny, tmp_path):
    root, weights, source = pretrained_tiny
    out = tmp_path / "shallow"
    result = train(_train_cfg(root, weights, **{"train.strategy": "shallow", "model.head": "max"}), out, progress=False)
    card = result.card.data
    assert card["training"]["strategy"] == "shallow" and card["model"]["head"] == "max"
    assert card["training"]["freeze_schedule"] == {"0": ["top"]}
    assert card["model"]["trainable_parameters"] == 16 * 3 + 3
    predictor = reloaded_matches_saved(out)[0]
    backbone = predictor.model.backbone.state_dict()
    for key in ("features.0.0.weight", "features.1.1.running_mean", "features.1.1.running_var"):
        assert torch.equal(backbone[key], source[key]), key


def test_deep_unfreezes_on_schedule_and_records_it(pretrained_tiny, tmp_path):
    root, weights, source = pretrained_tiny
    out = tmp_path / "deep"
    cfg = _train_cfg(root, weights, **{"train.strategy": "deep", "model.head": "avg", "train.monitor": "val_loss"})
    result = train(cfg, out, progress=False)
    assert result.card.data["training"]["freeze_schedule"] == {"0": ["top"], "1": ["stage 1", "top"],
                                                          "2": ["stem", "stage 1", "top"]}
    assert result.card.data["training"]["best_epoch"] == 3  # the loss still falls at the last epoch (1-based)
    backbone = reloaded_matches_saved(out)[0].model.backbone.state_dict()
    for key in ("features.1.0.weight", "features.0.0.weight"):  # opened at epochs 1 and 2
        assert not torch.equal(backbone[key], source[key]), key


def test_baseline_changes_only_the_classifier(pretrained_tiny, tmp_path):
    root, weights, source = pretrained_tiny
    out = tmp_path / "baseline"
    result = train(_train_cfg(root, weights, **{"train.strategy": "baseline", "train.epochs": 1}), out, progress=False)
    assert result.card.data["model"]["trainable_parameters"] == 16 * 3 + 3
    state = reloaded_matches_saved(out)[0].model.state_dict()
    assert all(torch.equal(state[k], source[k]) for k in state if not k.startswith("classifier"))


@pytest.mark.parametrize("kind", ["logistic", "svm", "random_forest"])
def test_features_strategy_bundles_reload_and_predict(pretrained_tiny, tmp_path, kind):
    root, weights, source = pretrained_tiny
    out = tmp_path / kind
    cfg = _train_cfg(root, weights, **{"train.strategy": "features", "train.features_classifier": kind})
    result = train(cfg, out, progress=False)
    card = result.card.data
    assert card["model"]["features_classifier"]["kind"] == kind
    assert card["training"]["epochs_run"] == 0 and "learning_curves" not in card["files"]
    assert result.validation["balanced_accuracy"] > 0.6  # three separable colours
    assert not list(out.glob("*.pkl")) and not list(out.glob("*.joblib"))
    reloaded_matches_saved(out)[0]
    with pytest.raises(FileExistsError, match="already holds a run"):  # no checkpoint, still not overwritten
        train(cfg, out, progress=False)


@pytest.mark.parametrize("kind", ["logistic", "svm", "random_forest"])
@pytest.mark.parametrize("num_classes", [2, 4])
def test_exported_classifiers_predict_what_scikit_learn_fitted(kind, num_classes):
    """The tensors in the bundle reproduce scikit-learn: predict_proba for logistic regression and
    the forest, decision_function (so the predicted class) for the linear SVM; a class absent from
    the training data (class 3 of 4) is never predicted."""
    from lesionlens.models.classical import scores_from_shape
    from lesionlens.training.features import fit_classifier

    rng = np.random.default_rng(0)
    present = min(num_classes, 3)
    targets = rng.integers(0, present, 300)
    features = (rng.normal(size=(300, 12)) + targets[:, None] * 0.7).astype(np.float32) * 5 + 3
    shape, tensors = fit_classifier(kind, features, targets, num_classes, seed=0)
    scores = scores_from_shape(shape)
    scores.load_state_dict(tensors)
    test = (rng.normal(size=(50, 12)) * 6 + 4).astype(np.float32)
    with torch.no_grad():
        logits = scores(torch.from_numpy(test)).double()
    probs = torch.softmax(logits, 1).numpy()
    assert probs.shape == (50, num_classes)
    assert (probs.argmax(1) < present).all()

    from sklearn.preprocessing import StandardScaler

    if kind == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        reference = RandomForestClassifier(200, class_weight="balanced", random_state=0, n_jobs=1).fit(features, targets)
        expected = reference.predict_proba(test)
        assert np.allclose(np.exp(logits.numpy()[:, :present]).clip(1e-6), expected.clip(1e-6), atol=1e-6)
        return
    scaler = StandardScaler().fit(features)
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        reference = LogisticRegression(max_iter=2000, class_weight="balanced").fit(scaler.transform(features), targets)
        assert np.allclose(probs[:, :present], reference.predict_proba(scaler.transform(test)), atol=1e-5)
    else:
        from sklearn.svm import LinearSVC

        reference = LinearSVC(C=0.1, class_weight="balanced", random_state=0).fit(scaler.transform(features), targets)
        decision = reference.decision_function(scaler.transform(test))
        ours = logits.numpy()[:, :present]
        assert np.allclose(ours[:, 1] - ours[:, 0] if present == 2 else ours, decision, atol=1e-4)
