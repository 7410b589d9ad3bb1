import shutil

import numpy as np
from PIL import Image

from fbinfer.data.features import FeatureStore
from fbinfer.data.preprocess import PixelPatches
from fbinfer.data.source import load_data
from fbinfer.model.config import preset


def test_cache_reuse_and_invalidation(tmp_path, tiny_data):
    d = tmp_path / "d"
    shutil.copytree(tiny_data, d, ignore=shutil.ignore_patterns(".fbinfer"))
    src = load_data(d)
    items = src.test[:6]
    cfg = preset("fashionbert-tiny")
    store = FeatureStore(src, cfg).ensure(items)
    assert store.array.shape == (6, 64, 320) and store.array.dtype == np.float16
    before = store.get(items).clone()
    mtime = (store.dir / "features.npy").stat().st_mtime_ns
    again = FeatureStore(src, cfg).ensure(items)  # a hit: nothing rewritten
    assert (store.dir / "features.npy").stat().st_mtime_ns == mtime
    assert np.array_equal(again.get(items).numpy(), before.numpy())
    # a changed image misses the cache: only its features change
    Image.open(d / items[0].image).transpose(Image.FLIP_LEFT_RIGHT).save(d / items[0].image)
    changed = FeatureStore(src, cfg).ensure(items).get(items)
    assert not np.allclose(changed[0].numpy(), before[0].numpy())
    assert np.array_equal(changed[1:].numpy(), before[1:].numpy())
    # another extractor is another key
    head = FeatureStore(src, preset("fashionbert-tiny", feature_layer="head")).ensure(items[:2])
    assert head.dir != store.dir and head.array.shape == (2, 64, 1280)


def test_pixel_patches_layout():
    img = np.zeros((256, 256, 3), dtype=np.uint8)
    img[32:64, 0:32, 0] = 255  # grid cell (row 1, col 0), red channel
    cells = PixelPatches()([Image.fromarray(img)])
    assert cells.shape == (1, 64, 3 * 32 * 32)
    lit = np.where(cells[0].max(axis=1) > 0)[0]
    assert lit.tolist() == [8]  # row-major: row 1, col 0
    assert (cells[0, 8, : 32 * 32] == 1.0).all() and (cells[0, 8, 32 * 32 :] == -1.0).all()


def test_the_fast_engine_gives_pytorchs_features(tiny_data):
    """The cache's OpenVINO trunk against PyTorch's, on real images of several products: each
    feature within the fp16 cache's step of PyTorch's, and nothing like another image's."""
    from fbinfer.data.features import EfficientNetPatches

    src = load_data(tiny_data)
    images = [src.open_image(it) for it in src.test[:5]]
    fast, ref = EfficientNetPatches(engine="fast"), EfficientNetPatches(engine="torch")
    assert fast.compiled is not None and ref.compiled is None  # openvino is in the test extra
    got, want = fast(images).astype(np.float32), ref(images).astype(np.float32)
    step = np.abs(want) * 2.0**-10 + 1e-4  # fp16's relative step, or 1e-4 near zero
    assert (np.abs(got - want) <= step).all()
    assert np.abs(got - want[::-1]).max() > 10 * step.max()  # the check tells images apart


def test_the_cache_takes_the_fast_engine_from_fast_from_images(tmp_path, tiny_data, monkeypatch):
    """Below ``FAST_FROM`` missing images the cache extracts in PyTorch, from it on OpenVINO (the real
    engine, counted as it is built): the threshold is wired, not only declared."""
    from fbinfer.data import features

    built = []
    real = features.openvino_trunk
    monkeypatch.setattr(features, "openvino_trunk", lambda *a: built.append(a) or real(*a))
    d = tmp_path / "d"
    shutil.copytree(tiny_data, d, ignore=shutil.ignore_patterns(".fbinfer"))
    src = load_data(d)
    FeatureStore(src, preset("fashionbert-tiny")).ensure(src.test[:2])
    assert built == []
    monkeypatch.setattr(features, "FAST_FROM", 2)
    FeatureStore(src, preset("fashionbert-tiny")).ensure(src.test[:4])  # two more images missing
    assert len(built) == 1
