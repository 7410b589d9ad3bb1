"""``fbinfer serve`` on the real NVIDIA Triton server (nvidia-pytriton's tritonserver), started on free
ports: scores over HTTP and gRPC equal PyTorch's, ranks equal ``fbinfer.load``'s, bad requests get errors without harming
the good ones around them, SIGTERM stops it with nothing left running, and the GPU repository's
configs parse with Triton's own protobuf."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_cli_errors, assert_one_line_error, run_cli

from fbinfer.bundle import Bundle
from fbinfer.data.preprocess import bundle_preprocess
from fbinfer.errors import FbinferError

pytest.importorskip("tritonclient.grpc", reason="serving needs the serve extra: pip install -e '.[serve]'")
if __import__("importlib.util").util.find_spec("pytriton") is None:
    pytest.skip("the Triton server binary is not installed (pip install -e '.[serve]')", allow_module_level=True)

import tritonclient.grpc as tg
import tritonclient.http as th
from tritonclient.utils import InferenceServerException

from fbinfer.serve.repository import parse_pbtxt, write_gpu_repository, write_python_repository
from fbinfer.serve.server import Ports, TritonServer

TEXTS = ["red midi dress", "black leather ankle boots", "white cotton tee", "blue denim jacket", "green silk scarf",
         "grey wool coat"]


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory):
    repo = write_python_repository(Bundle.open(tiny_bundle), tmp_path_factory.mktemp("serve") / "models", "onnxruntime", "fp32",
                                   max_batch=8, queue_delay_us=2000)
    with TritonServer(repo, Ports.free()) as s:
        yield s


@pytest.fixture(scope="module")
def matcher(tiny_bundle):
    import fbinfer

    return fbinfer.load(tiny_bundle, backend="onnxruntime")


@pytest.fixture(scope="module")
def blobs(tiny_data) -> list[bytes]:
    return [p.read_bytes() for p in sorted((tiny_data / "images").iterdir())[:len(TEXTS)]]


def inputs(module, **arrays: np.ndarray) -> list:
    out = []
    for name, a in arrays.items():
        t = module.InferInput(name, list(a.shape), "BYTES" if a.dtype == object else {np.float32: "FP32", np.int32: "INT32",
                                                                                       np.float64: "FP64"}[a.dtype.type])
        t.set_data_from_numpy(a)
        out.append(t)
    return out


def strings(values: list, rows: bool = True) -> np.ndarray:
    return np.array([[v] for v in values] if rows else values, dtype=object)


@pytest.fixture(scope="module")
def torch_reference(tiny_model):
    """PyTorch's own scores and features, apart from anything the server runs: the checkpoint's
    model called on the tokenized captions, and the PyTorch extractor (fp16-rounded, as the cache)."""
    import torch

    import fbinfer
    from fbinfer.model.checkpoint import load_checkpoint

    ck = load_checkpoint(tiny_model)
    tok = ck.tokenizer()

    def logits(texts: list[str], patches: np.ndarray) -> np.ndarray:
        t = tok(texts)
        with torch.no_grad():
            return ck.model(torch.as_tensor(t.input_ids), torch.as_tensor(t.attention_mask), torch.from_numpy(patches.astype(np.float32))).logit.numpy()

    return logits, fbinfer.load(tiny_model).patch_features


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_served_scores_equal_torch(server, torch_reference, blobs, protocol):
    """Served logits against the PyTorch model's on the same captions and the served patch features
    (fp32 graph: within 1e-4), and the served extractor against PyTorch's (within fp16 rounding)."""
    logits, torch_features = torch_reference
    module, url = (th, server.http_url) if protocol == "http" else (tg, server.grpc_url)
    client = module.InferenceServerClient(url)
    feats = client.infer("image_features", inputs(module, IMAGE=strings(blobs))).as_numpy("PATCHES")
    ref = torch_features(blobs)
    assert np.abs(feats.astype(np.float32) - ref).max() <= 2e-3 * np.abs(ref).max()
    want = logits(TEXTS, feats)
    assert want.std() > 0.1  # scores that spread: a shuffled or constant answer cannot pass
    texts = strings([t.encode() for t in TEXTS])
    got = client.infer("fashionbert", inputs(module, TEXT=texts, IMAGE=strings(blobs))).as_numpy("LOGIT")
    assert got.shape == (len(TEXTS), 1) and np.abs(got.ravel() - want).max() <= 1e-4
    got = client.infer("fashionbert", inputs(module, TEXT=texts, PATCHES=feats)).as_numpy("LOGIT")
    assert np.abs(got.ravel() - want).max() <= 1e-4


def test_rank_equals_in_process(server, matcher, blobs):
    client = tg.InferenceServerClient(server.grpc_url)
    k = np.array([3], np.int32)
    r = client.infer("rerank", inputs(tg, QUERY_TEXT=strings([TEXTS[1].encode()], False),
                                                CANDIDATE_IMAGES=strings(blobs, False), K=k))
    want = matcher.rank(TEXTS[1], blobs, k=3)
    assert r.as_numpy("INDICES").tolist() == want.indices.tolist()
    assert np.abs(r.as_numpy("SCORES") - want.scores).max() <= 1e-5
    r = client.infer("rerank", inputs(tg, QUERY_IMAGE=strings([blobs[2]], False),
                                                CANDIDATE_TEXTS=strings([t.encode() for t in TEXTS], False), K=k))
    assert r.as_numpy("INDICES").tolist() == matcher.rank(blobs[2], TEXTS, k=3, direction="image_to_text").indices.tolist()


def test_malformed_requests_fail_alone(server, matcher, blobs):
    """Each bad request gets an error with a message; good requests sent at the same time (and so
    batched with them by Triton) all get their right scores."""
    client = tg.InferenceServerClient(server.grpc_url)  # thread-safe (the HTTP client is gevent's, one per thread)
    texts = strings([t.encode() for t in TEXTS[:2]])
    good = {"TEXT": texts, "IMAGE": strings(blobs[:2])}
    bad = {
        "corrupt image": ({"TEXT": texts, "IMAGE": strings([b"\xff\xd8 not a jpeg", blobs[0]])}, "not a readable image"),
        "empty text": ({"TEXT": strings([b"", b"a dress"]), "IMAGE": strings(blobs[:2])}, "TEXT[0] is empty"),
        "no image": ({"TEXT": texts}, "give IMAGE"),
        "wrong dtype": ({"TEXT": texts, "PATCHES": np.zeros((2, 64, 320), np.float64)}, "FP64"),
        "wrong shape": ({"TEXT": texts, "PATCHES": np.zeros((2, 64, 319), np.float32)}, "shape"),
        "over max batch": ({"TEXT": strings([b"a dress"] * 9), "IMAGE": strings(blobs[:1] * 9)}, "batch"),
    }
    want = matcher.score(TEXTS[:2], blobs[:2])

    def send(arrays):
        try:
            return client.infer("fashionbert", inputs(tg, **arrays)).as_numpy("LOGIT").ravel()
        except InferenceServerException as e:
            return e

    with ThreadPoolExecutor(16) as pool:
        goods = [pool.submit(send, good) for _ in range(12)]
        bads = {name: pool.submit(send, arrays) for name, (arrays, _) in bad.items()}
        goods += [pool.submit(send, good) for _ in range(12)]
    for f in goods:
        assert isinstance(f.result(), np.ndarray) and np.abs(f.result() - want).max() <= 1e-5, f.result()
    for name, f in bads.items():
        e = f.result()
        assert isinstance(e, InferenceServerException), name
        assert bad[name][1] in e.message(), (name, e.message())
    assert np.abs(send(good) - want).max() <= 1e-5


def test_serve_cli_stops_on_sigterm(tiny_bundle, tmp_path):
    """The real command in the foreground: ready, answering, then SIGTERM -> exit 0 within 10 s and
    no server or stub process left."""
    ports, repo = Ports.free(), tmp_path / "repo"
    p = subprocess.Popen([sys.executable, "-m", "fbinfer.cli", "serve", str(tiny_bundle), "--http-port", str(ports.http),
                          "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics), "--rest-port", str(ports.rest),
                          "--repository", str(repo)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client, probe = th.InferenceServerClient(f"localhost:{ports.http}"), TritonServer(repo, ports)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and p.poll() is None and not probe.ready():  # models ready and metrics up
        time.sleep(0.3)
    assert client.is_server_ready() and client.is_model_ready("fashionbert")
    metrics = __import__("urllib.request").request.urlopen(f"http://localhost:{ports.metrics}/metrics", timeout=5).read().decode()
    assert 'nv_inference_request_success{model="fashionbert"' in metrics
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=15)
    assert p.returncode == 0 and time.monotonic() - t0 <= 10, out[-2000:]
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and str(repo) in _cmdline(pid)], "a server process survived"


def test_serve_killed_leaves_no_server_behind(tiny_bundle, tmp_path):
    """SIGKILL to fbinfer serve (no handler runs): its tritonserver and the stubs die with it (the
    reaper kills their process group), and the ports are free again (a server orphaned by a killed
    parent kept them before; without the reaper this fails: tried)."""
    ports, repo = Ports.free(), tmp_path / "repo"
    p = subprocess.Popen([sys.executable, "-m", "fbinfer.cli", "serve", str(tiny_bundle), "--http-port", str(ports.http),
                          "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics), "--rest-port", str(ports.rest),
                          "--repository", str(repo)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    probe = TritonServer(repo, ports)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and p.poll() is None and not probe.ready():
        time.sleep(0.3)
    assert probe.ready()
    p.kill()
    p.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and [pid for pid in os.listdir("/proc") if pid.isdigit() and str(repo) in _cmdline(pid)]:
        time.sleep(0.3)
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and str(repo) in _cmdline(pid)], "a server process survived"
    while True:  # the kernel closes a dead process's sockets just after it leaves /proc: a moment's grace
        try:
            return ports.check_free()
        except FbinferError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_serve_errors_are_one_line(tiny_bundle, tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert_one_line_error(run_cli("serve", str(tiny_bundle), "--http-port", str(taken)), f"--http-port {taken}: the port is in use")
    assert_cli_errors([(["serve", str(tmp_path)], "not an fbinfer bundle"),
                       (["serve", str(tiny_bundle), "--backend", "tensorrt"], "--backend tensorrt is not available here"),
                       (["serve", str(tiny_bundle), "--max-batch", "0"], "--max-batch must be >= 1"),
                       (["serve", str(tiny_bundle), "--index", str(tmp_path / "none.index")], "no such index"),
                       (["serve", str(tiny_bundle), "--depth", "-1"], "--depth must be >= 0"),
                       (["serve", str(tiny_bundle), "--api-key-file", str(tmp_path / "no-key")], "--api-key-file"),
                       (["serve", str(tiny_bundle), "--depth", "64", "--max-documents", "32"], "--depth 64 is above --max-documents 32")])


def test_missing_server_binary_names_the_install(monkeypatch):
    import importlib.util

    from fbinfer.serve.server import TritonInstall

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pytriton" else real(name, *a))
    with pytest.raises(FbinferError, match=r"not installed: pip install -e '\.\[serve\]'"):
        TritonInstall.find()


def test_gpu_repository_configs_parse(tiny_bundle, tmp_path):
    """Every config.pbtxt parses into Triton's ModelConfig, the ensemble's steps name models and
    tensors that exist, and the files each platform loads are there."""
    b = Bundle.open(tiny_bundle)
    repo = write_gpu_repository(b, tmp_path / "gpu", "onnxruntime", "fp16")
    configs = {p.parent.name: parse_pbtxt(p) for p in repo.glob("*/config.pbtxt")}
    assert set(configs) == {"preprocess", "extractor", "matcher", "fashionbert"}
    assert configs["matcher"].platform == "onnxruntime_onnx" and (repo / "matcher/1/model.onnx").is_file()
    assert configs["extractor"].optimization.execution_accelerators.gpu_execution_accelerator[0].name == "tensorrt"
    assert (repo / "preprocess/1/vocab.txt").read_text() == (tiny_bundle / "vocab.txt").read_text()
    tensors = {name: {t.name for t in [*c.input, *c.output]} for name, c in configs.items()}
    for step in configs["fashionbert"].ensemble_scheduling.step:
        assert set(step.input_map) | set(step.output_map) <= tensors[step.model_name], step.model_name
    with pytest.raises(FbinferError, match="fbinfer build"):
        write_gpu_repository(b, tmp_path / "trt", "tensorrt", "fp16")  # the engine is built on the GPU first
    assert not (tmp_path / "trt").exists()


def test_gpu_repository_preprocess_runs(tiny_bundle, tiny_data, blobs, tmp_path):
    """The ensemble's Python preprocessing is the one part of the GPU repository that runs here:
    served alone, it gives the bundle's tokenizer ids and the manifest's pixels."""
    import shutil

    b = Bundle.open(tiny_bundle)
    gpu = write_gpu_repository(b, tmp_path / "gpu", "onnxruntime", "fp32")
    shutil.copytree(gpu / "preprocess", tmp_path / "only" / "preprocess")
    with TritonServer(tmp_path / "only", Ports.free()) as s:
        r = th.InferenceServerClient(s.http_url).infer("preprocess", inputs(th, TEXT=strings([t.encode() for t in TEXTS[:2]]),
                                                                             IMAGE=strings(blobs[:2])))
    from fbinfer.data.decode import decode_image

    tok = b.tokenizer()(TEXTS[:2], pad_to=b.config.max_text_len)
    assert np.array_equal(r.as_numpy("input_ids"), tok.input_ids) and np.array_equal(r.as_numpy("attention_mask"), tok.attention_mask)
    assert np.array_equal(r.as_numpy("pixels"), bundle_preprocess(b)([decode_image(x, "x") for x in blobs[:2]]))
