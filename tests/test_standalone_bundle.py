"""A bundle serves alone: its extractor graph gives PyTorch's patch features, the matcher ranks the
same with them, and ``fbinfer.load`` scores raw texts and images where ``import torch`` fails."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fbinfer.backends.onnxruntime import OnnxRuntimeRunner
from fbinfer.bundle import Bundle
from fbinfer.bundle.io_spec import PATCHES, PIXELS
from fbinfer.data.decode import decode_image
from fbinfer.data.preprocess import bundle_preprocess
from fbinfer.export.extractor import FP32_TOLERANCE, reference_features


def images(data: Path, n: int) -> list[Path]:
    return sorted((data / "images").iterdir())[:n]


def test_manifest_records_extractor_parity(tiny_bundle):
    e = json.loads((tiny_bundle / "manifest.json").read_text())["extractor"]
    assert set(e["graphs"]) == {"fp32", "fp16"} and e["preprocess"]["size"] == 256
    rows = {(r["graph"], r["backend"]): r for r in e["parity"]}
    assert rows[("extractor.fp32", "onnxruntime")]["max_abs_feature_diff"] <= FP32_TOLERANCE
    assert rows[("extractor.fp32", "openvino")]["max_abs_feature_diff"] <= FP32_TOLERANCE
    # FP16 is a different graph, not a copy: it differs, but by far less than the features' spread
    fp16 = rows[("extractor.fp16", "onnxruntime")]
    assert 0 < fp16["mean_abs_feature_diff"] < 0.05 * fp16["feature_std"]
    assert e["end_to_end"]["rank1_agreement"] == 1.0 and e["end_to_end"]["max_rel_logit_diff"] < 1e-3


def test_extractor_graph_matches_pytorch(tiny_bundle, tiny_data):
    """Recomputed here, on images the export's parity set may not hold: the graph is the trunk."""
    b = Bundle.open(tiny_bundle)
    pixels = bundle_preprocess(b)([decode_image(p.read_bytes(), p.name) for p in images(tiny_data, 3)])
    got = OnnxRuntimeRunner(b.extractor_graph(), outputs=(PATCHES,)).activate().infer({PIXELS: pixels})[PATCHES]
    ref = reference_features(b.config, pixels)
    assert got.shape == (3, 64, 320) and ref.std() > 0.5
    assert np.abs(got - ref).max() <= FP32_TOLERANCE
    assert np.abs(got - ref[::-1]).max() > 100 * FP32_TOLERANCE  # the images differ enough to tell them apart


TORCH_FREE = """
import json, sys
sys.modules["torch"] = None  # any import of torch now raises ImportError
import fbinfer
paths, texts = sys.argv[2:6], ["red midi dress", "black leather boots", "white cotton tee", "blue denim jacket"]
m = fbinfer.load(sys.argv[1], backend="onnxruntime")
blobs = [open(p, "rb").read() for p in paths]
out = {"paths": m.score(texts, paths).tolist(), "bytes": m.score(texts, blobs).tolist(),
       "rank": m.rank(texts[0], paths, k=4).indices.tolist(),
       "torch": sorted(k for k, v in sys.modules.items() if k.startswith("torch") and v is not None)}
print(json.dumps(out))
"""


def test_load_scores_raw_inputs_without_torch(tiny_bundle, tiny_data):
    import fbinfer

    paths = [str(p) for p in images(tiny_data, 4)]
    r = subprocess.run([sys.executable, "-c", TORCH_FREE, str(tiny_bundle), *paths], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.splitlines()[-1])
    assert got["torch"] == []
    texts = ["red midi dress", "black leather boots", "white cotton tee", "blue denim jacket"]
    # the reference: the checkpoint on PyTorch, with the PyTorch extractor (whose features are rounded to fp16, as cached)
    ref = fbinfer.load(Bundle.open(tiny_bundle).source_checkpoint).score(texts, paths)
    assert np.allclose(got["paths"], got["bytes"], atol=1e-6)
    assert np.abs(np.array(got["paths"]) - ref).max() < 1e-3 < np.abs(np.array(got["paths"]) - ref[::-1]).max()


def test_bundle_without_extractor_needs_torch(tiny_bundle, tiny_data, tmp_path):
    """An older bundle (no extractor entry) falls back to PyTorch; without torch that is one clear error."""
    import shutil

    old = tmp_path / "old.bundle"
    shutil.copytree(tiny_bundle, old)
    m = json.loads((old / "manifest.json").read_text())
    for g in m.pop("extractor")["graphs"].values():
        del m["files"][g["file"]]
    (old / "manifest.json").write_text(json.dumps(m))
    code = TORCH_FREE.split("paths, texts")[0] + "fbinfer.load(sys.argv[1]).score(['a dress'], [sys.argv[2]])"
    r = subprocess.run([sys.executable, "-c", code, str(old), str(images(tiny_data, 1)[0])], capture_output=True, text=True, check=False)
    assert r.returncode != 0 and "exported by this fbinfer" in r.stderr, r.stderr[-1500:]


@pytest.mark.parametrize("field,value,message", [
    ("size", "big", "malformed image preprocessing"), ("resample", "lanczos9", "malformed image preprocessing")])
def test_malformed_preprocess_is_one_line(tiny_bundle, tmp_path, field, value, message):
    import shutil

    from fbinfer.errors import FbinferError

    bad = tmp_path / "bad.bundle"
    shutil.copytree(tiny_bundle, bad)
    m = json.loads((bad / "manifest.json").read_text())
    m["extractor"]["preprocess"][field] = value
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(FbinferError, match=message):
        bundle_preprocess(Bundle.open(bad))
