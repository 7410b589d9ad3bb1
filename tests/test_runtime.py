"""fbinfer.load and the Matcher: same rankings on PyTorch and ONNX Runtime, every image input
kind, chunking, threads, and the TensorRT error paths that can be checked without TensorRT."""
from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error, matrix_parity, parity_misses, run_cli
from PIL import Image

import fbinfer
from fbinfer.backends.tensorrt import check_engine_record
from fbinfer.build.tensorrt import profile_shapes
from fbinfer.bundle import Bundle
from fbinfer.data.source import load_data
from fbinfer.errors import EngineError, FbinferError


@pytest.fixture(scope="module")
def catalogue(tiny_data):
    data = load_data(tiny_data)
    items = data.test[:12]
    return [str(Path(tiny_data) / it.image) for it in items], [it.text for it in items]


def grid(matcher, texts: list[str], paths: list[str]) -> np.ndarray:
    """Every text against every image: (texts, images), each row one text query's list."""
    return matcher.score([t for t in texts for _ in paths], paths * len(texts)).reshape(len(texts), len(paths))


def test_torch_and_onnxruntime_rank_alike(tiny_model, tiny_bundle, catalogue):
    paths, texts = catalogue
    with fbinfer.load(tiny_model) as ref, fbinfer.load(tiny_bundle) as ort:
        assert ref.backend.startswith("torch") and "ort.fp32" in ort.backend
        for q in texts[:3]:
            a, b = ref.rank(q, paths, k=5), ort.rank(q, paths, k=5)
            assert list(a.indices) == list(b.indices)
            np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        a, b = ref.rank(Path(paths[0]), texts, k=5), ort.rank(paths[0], texts, k=5, direction="image_to_text")
        assert list(a.indices) == list(b.indices)
        int8 = fbinfer.load(tiny_bundle, precision="int8")
        assert parity_misses(matrix_parity(grid(ref, texts, paths), grid(int8, texts, paths)), "int8") == []


def test_torch_bf16_on_cpu_ranks_like_fp32(tiny_model, catalogue):
    paths, texts = catalogue
    fp32 = fbinfer.load(tiny_model, device="cpu")
    bf16 = fbinfer.load(tiny_model, device="cpu", precision="bf16")
    assert bf16.backend == "torch-bf16-cpu"
    assert parity_misses(matrix_parity(grid(fp32, texts, paths), grid(bf16, texts, paths)), "bf16") == []
    with pytest.raises(FbinferError, match="fp16 on torch needs a CUDA device"):
        fbinfer.load(tiny_model, device="cpu", precision="fp16")


def test_every_image_input_kind_scores_the_same(tiny_bundle, catalogue):
    paths, texts = catalogue
    m = fbinfer.load(tiny_bundle)
    pil = [Image.open(p).convert("RGB") for p in paths]
    arrays = [np.asarray(im) for im in pil]
    feats = m.patch_features(paths)
    base = m.score(texts, paths)
    for kind in (pil, arrays, feats, list(feats)):
        np.testing.assert_allclose(m.score(texts, kind), base, atol=1e-5)


def test_long_candidate_lists_are_chunked(tiny_bundle, catalogue):
    paths, texts = catalogue
    many = (paths * 4)[:45]
    small = fbinfer.load(tiny_bundle, batch_size=4)
    big = fbinfer.load(tiny_bundle, batch_size=64)
    np.testing.assert_allclose(small.score([texts[0]] * 45, many), big.score([texts[0]] * 45, many), atol=1e-5)
    r = small.rank(texts[0], many, k=45)
    assert sorted(r.indices.tolist()) == list(range(45)) and np.all(np.diff(r.scores) <= 0)


def test_concurrent_calls_from_threads(tiny_bundle, catalogue):
    paths, texts = catalogue
    m = fbinfer.load(tiny_bundle, batch_size=5)
    feats = m.patch_features(paths)
    jobs = [(texts[i:] + texts[:i], feats) for i in range(8)]
    sequential = [m.score(t, f) for t, f in jobs]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda j: m.score(*j), jobs))
    for s, p in zip(sequential, parallel):
        np.testing.assert_array_equal(s, p)
    m.close()
    with pytest.raises(FbinferError, match="closed"):
        m.score(texts, feats)


def test_bad_calls_fail_clearly(tiny_bundle, tmp_path, catalogue):
    paths, texts = catalogue
    m = fbinfer.load(tiny_bundle)
    with pytest.raises(FbinferError, match="aligned"):
        m.score(texts, paths[:2])
    with pytest.raises(FbinferError, match="cannot read image"):
        m.score([texts[0]], [str(tmp_path / "missing.jpg")])
    with pytest.raises(FbinferError, match="caption candidates"):
        m.rank(Path(paths[0]), [Path(x) for x in paths])
    with pytest.raises(FbinferError, match="direction must be"):
        m.rank(texts[0], paths, direction="sideways")
    with pytest.raises(FbinferError, match="not an fbinfer bundle"):
        fbinfer.load(tmp_path)
    with pytest.raises(FbinferError, match="backend 'tensorrt' is not available here: TensorRT is not installed"):
        fbinfer.load(tiny_bundle, backend="tensorrt", precision="fp16")
    with pytest.raises(FbinferError, match="no TensorRT fp16 engine; build it with: fbinfer build"):
        Bundle.open(tiny_bundle).engine("fp16")
    with pytest.raises(FbinferError, match="precision 'bf16' on onnxruntime: choose from fp32, fp16, int8"):
        fbinfer.load(tiny_bundle, precision="bf16")


def test_engine_built_elsewhere_is_refused_with_the_rebuild_command(tmp_path):
    record = {"file": "engine.fp16.plan", "precision": "fp16", "tensorrt": "10.13.0", "gpu": "NVIDIA A100-SXM4-40GB",
              "compute_capability": "8.0"}
    here = {"gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    with pytest.raises(EngineError, match=r"built for NVIDIA A100.*fbinfer build .* --precision fp16"):  # typed: callers rebuild
        check_engine_record(record, "10.13.0", here, tmp_path)
    with pytest.raises(FbinferError, match="TensorRT 10.13.0"):
        check_engine_record({**record, **here}, "11.0.0", here, tmp_path)
    check_engine_record({**record, **here}, "10.13.0", here, tmp_path)  # same GPU and version: fine


def test_profile_shapes_follow_the_manifest(tiny_bundle):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    shapes = profile_shapes(manifest, max_batch=64, opt_batch=16)
    assert shapes["input_ids"] == ((1, 2), (16, 32), (64, 64))
    assert shapes["patches"] == ((1, 64, 320), (16, 64, 320), (64, 64, 320))


def test_tensorrt_paths_without_tensorrt_are_one_line(tiny_bundle, tmp_path):
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here: the missing-TensorRT path cannot be shown")
    except ImportError:
        pass
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    r = run_cli("build", str(bundle), "--precision", "fp16")
    assert_one_line_error(r, "TensorRT is not installed")
    (bundle / "engine.fp16.plan").write_bytes(b"\0")
    Bundle.open(bundle).record_engine("fp16", {"tensorrt": "10.13.0", "gpu": "NVIDIA H100", "compute_capability": "9.0"})
    with pytest.raises(FbinferError, match="TensorRT is not installed"):
        fbinfer.load(bundle / "engine.fp16.plan")


@pytest.mark.gpu
def test_tensorrt_engine_matches_onnxruntime(tiny_bundle, tmp_path, catalogue):
    """Runs only where TensorRT and a CUDA GPU exist."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install tensorrt-cu13 on a CUDA machine)")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from fbinfer.build.tensorrt import build_engine

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    paths, texts = catalogue
    ref = fbinfer.load(bundle).score(texts, paths)
    for precision, tol in (("fp32", 1e-3), ("fp16", 2e-2)):
        build_engine(bundle, precision, max_batch=64, opt_batch=16)
        got = fbinfer.load(bundle / f"engine.{precision}.plan").score(texts, paths)
        np.testing.assert_allclose(got, ref, atol=tol)


def test_library_misuse_is_one_fbinfer_error(tiny_bundle, catalogue):
    paths, texts = catalogue
    m = fbinfer.load(tiny_bundle)
    for k in (0, -1, 1.5, True, "3"):
        with pytest.raises(FbinferError, match="k must be a positive integer"):
            m.rank(texts[0], paths, k=k)
    assert len(m.rank(texts[0], paths, k=3).indices) == 3
    with pytest.raises(FbinferError, match="texts must be a list of caption strings"):
        m.score([1, 2], paths[:2])
    with pytest.raises(FbinferError, match="images must be a list or an array, not NoneType"):
        m.score(texts[:2], None)
    for bad in (0, -1, 2.5):
        with pytest.raises(FbinferError, match="batch_size must be a positive integer"):
            fbinfer.load(tiny_bundle, batch_size=bad)


def test_non_finite_scores_are_an_error_not_a_ranking(tiny_model, tiny_data, tmp_path):
    """A NaN in the TIA head once evaluated as Rank@1 100 (``scores >= truth`` is false for NaN)."""
    import torch

    from fbinfer.model.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

    ck = load_checkpoint(tiny_model)
    with torch.no_grad():
        ck.model.tia.bias.fill_(float("nan"))
    broken = tmp_path / "nan.pt"
    save_checkpoint(Checkpoint(ck.model, ck.vocab, ck.meta), broken)
    r = run_cli("eval", str(broken), "--data", str(tiny_data))
    assert_one_line_error(r, "nan.pt: non-finite scores")
    paths = [str(tiny_data / it.image) for it in load_data(tiny_data).test[:3]]
    with pytest.raises(FbinferError, match="returned non-finite scores"):
        fbinfer.load(broken).score(["a red dress"] * 3, paths)
