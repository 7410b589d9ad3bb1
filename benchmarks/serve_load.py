"""Load and faults on the real Triton server (``fbinfer serve``'s repository), against the same work
done in-process by ``fbinfer.load`` in the same run.

    python benchmarks/serve_load.py TEACHER.bundle STUDENT.bundle --seconds 10 --json docs/results/serve_load.json

Traffic, per bundle, from 1, 8 and 32 concurrent gRPC clients (closed loop, fixed time):
- ``pair``: batch-1 pair scoring, a caption and its image's patch features (the rerank path: a
  catalogue's features are computed once, by the image_features model);
- ``rank``: one image query (its patch features) against 101 candidate captions.
Then the pair shape at about half the saturated rate (open loop, paced), for its p99 / p50.
In-process: ``Matcher.score`` on batches of 64 pairs, and ``Matcher.rank`` of the same lists.
Faults: malformed requests mixed into good load; the server killed during load (clients must get
errors, not hang); a restart on the same ports (serving must resume).
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import tritonclient.grpc as tg
from rich.console import Console
from rich.table import Table
from tritonclient.utils import InferenceServerException

import fbinfer
from fbinfer import terminal
from fbinfer.bundle import Bundle
from fbinfer.serve.repository import write_python_repository
from fbinfer.serve.server import Ports, TritonServer

CANDIDATES = 101
CAPTIONS = ["black leather ankle boots with a block heel", "red striped cotton midi dress", "white oversized linen shirt",
            "navy wool double breasted coat", "green silk scarf with a floral print", "grey knit turtleneck sweater"]


def tensor(name: str, a: np.ndarray) -> tg.InferInput:
    t = tg.InferInput(name, list(a.shape), "BYTES" if a.dtype == object else {np.float32: "FP32", np.int32: "INT32",
                                                                              np.float64: "FP64"}[a.dtype.type])
    t.set_data_from_numpy(a)
    return t


class Requests:
    """The two request shapes, and malformed ones, for one model's patch shape."""

    def __init__(self, patches: tuple[int, int], seed: int = 0):
        g = np.random.default_rng(seed)
        self.feats = g.standard_normal((16, *patches)).astype(np.float32)
        self.captions = [f"{CAPTIONS[i % len(CAPTIONS)]} {i}" for i in range(CANDIDATES)]

    def pair(self, i: int) -> tuple[str, list, int]:
        text = np.array([[self.captions[i % CANDIDATES].encode()]], dtype=object)
        return "fashionbert", [tensor("TEXT", text), tensor("PATCHES", self.feats[i % 16][None])], 1

    def rank(self, i: int) -> tuple[str, list, int]:
        texts = np.array([c.encode() for c in self.captions], dtype=object)
        return "rerank", [tensor("QUERY_PATCHES", self.feats[i % 16]), tensor("CANDIDATE_TEXTS", texts),
                                    tensor("K", np.array([10], np.int32))], CANDIDATES

    def malformed(self, i: int) -> tuple[str, list, int]:
        text = np.array([[b"a red dress"]], dtype=object)
        kinds = [
            [tensor("TEXT", text), tensor("PATCHES", self.feats[:1].astype(np.float64))],  # wrong dtype
            [tensor("TEXT", text), tensor("PATCHES", self.feats[:1, :, :-1].copy())],  # wrong shape
            [tensor("TEXT", np.array([[b""]], dtype=object)), tensor("PATCHES", self.feats[:1])],  # empty text
            [tensor("TEXT", text), tensor("IMAGE", np.array([[b"\xff\xd8 not a jpeg"]], dtype=object))],  # corrupt image
            [tensor("TEXT", np.array([[b"x"]] * 200, dtype=object)), tensor("PATCHES", np.repeat(self.feats[:1], 200, 0))],  # > max batch
        ]
        return "fashionbert", kinds[i % len(kinds)], 0


def load(url: str, make, clients: int, seconds: float, rate: float | None = None, timeout_s: float = 300.0) -> dict:
    """``clients`` threads sending ``make(i)`` for ``seconds``: closed loop, or paced to ``rate``
    requests/s in all (open loop: latency counts from the scheduled send time)."""
    lat: list[float] = []
    errors: list[str] = []
    pairs = [0]
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(k: int) -> None:
        client = tg.InferenceServerClient(url)
        i, next_at = k, time.perf_counter()
        while True:
            if rate:
                next_at += clients / rate
                time.sleep(max(0.0, next_at - time.perf_counter()))
            start = next_at if rate else time.perf_counter()
            if start >= stop:
                return
            model, inputs, n = make(i)
            try:
                client.infer(model, inputs, client_timeout=timeout_s)
                with lock:
                    lat.append(time.perf_counter() - start)
                    pairs[0] += n
            except InferenceServerException as e:
                with lock:
                    errors.append(e.message()[:120])
            i += clients

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = np.array(lat) * 1e3 if lat else np.array([np.nan])
    return {"clients": clients, "seconds": round(wall, 2), "requests": len(lat), "requests_per_s": len(lat) / wall,
            "pairs_per_s": pairs[0] / wall, "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": len(errors), "error_samples": sorted(set(errors))[:5],
            "paced_rate": rate}


def drain(url: str, make) -> None:
    """Wait until the server has worked off what earlier clients queued: one more request of the
    same model, queued behind them, returns."""
    model, inputs, _ = make(0)
    tg.InferenceServerClient(url).infer(model, inputs)


def batch_stats(url: str, model: str) -> dict[int, int]:
    stats = tg.InferenceServerClient(url).get_inference_statistics(model, as_json=True)["model_stats"][0]
    return {int(b["batch_size"]): int(b["compute_infer"].get("count", 0)) for b in stats.get("batch_stats", [])}


def formed(before: dict[int, int], after: dict[int, int]) -> dict[int, int]:
    return {b: after[b] - before.get(b, 0) for b in sorted(after) if after[b] - before.get(b, 0)}


def in_process(bundle: Path, req: Requests, seconds: float) -> dict:
    """The same work through fbinfer.load: pairs in batches of 64, and the ranking lists."""
    m = fbinfer.load(bundle, backend="onnxruntime")
    texts, feats = req.captions[:64], np.stack([req.feats[i % 16] for i in range(64)])
    out = {}
    for name, fn, n in (("pair", lambda i: m.score(texts, feats), 64),
                        ("rank", lambda i: m.rank(req.feats[i % 16], req.captions, k=10, direction="image_to_text"), CANDIDATES)):
        fn(0)
        calls, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn(calls)
            calls += 1
        wall = time.perf_counter() - t0
        out[name] = {"calls_per_s": calls / wall, "pairs_per_s": calls * n / wall}
    m.close()
    return out


def bench_bundle(bundle: Path, seconds: float, clients: list[int], console: Console) -> dict:
    b = Bundle.open(bundle)
    req = Requests((b.config.num_patches, b.config.patch_feature_dim))
    result: dict = {"bundle": str(bundle), "model": f"{b.config.num_layers} x {b.config.hidden_size}", "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        repo = write_python_repository(b, Path(tmp) / "models", "onnxruntime", "fp32", max_batch=64, queue_delay_us=500)
        ports = Ports.free()
        server = TritonServer(repo, ports).start()
        url = server.grpc_url
        try:
            result["in_process"] = in_process(bundle, req, seconds)  # first, while the server is idle
            for shape in ("pair", "rank"):
                make = getattr(req, shape)
                load(url, make, 1, 1.0)  # warm-up
                for c in clients:
                    model = make(0)[0]
                    before = batch_stats(url, model)
                    run = {"shape": shape, **load(url, make, c, seconds), "batches_formed": formed(before, batch_stats(url, model))}
                    drain(url, make)
                    result["runs"].append(run)
                    console.print(f"  {shape:4s} {c:2d} clients: {run['requests_per_s']:7.1f} req/s {run['pairs_per_s']:8.1f} pairs/s "
                                  f"p50 {run['p50_ms']:6.1f} p99 {run['p99_ms']:6.1f} ms, errors {run['errors']}")
            saturated = max(r["requests_per_s"] for r in result["runs"] if r["shape"] == "pair")
            half = {"shape": "pair", **load(url, req.pair, 8, seconds, rate=saturated / 2)}
            drain(url, req.pair)
            result["half_load"] = half
            console.print(f"  pair at {saturated / 2:.0f} req/s (half): p50 {half['p50_ms']:.1f} p99 {half['p99_ms']:.1f} ms")
            result["faults"] = faults(server, repo, ports, req, seconds)
            server = result["faults"].pop("server")
        finally:
            server.stop()
    return result


def faults(server: TritonServer, repo: Path, ports: Ports, req: Requests, seconds: float) -> dict:
    """Malformed requests mixed into good load; a kill during load; a restart."""
    out: dict = {}
    url, box = server.grpc_url, {}
    bad = threading.Thread(target=lambda: box.update(bad=load(url, req.malformed, 1, seconds)))
    bad.start()
    out["mixed_good"] = load(url, req.pair, 8, seconds)
    bad.join()
    out["mixed_bad"] = box["bad"]
    drain(url, req.pair)
    killer = threading.Timer(seconds / 2, lambda: os.kill(server.process.pid, signal.SIGKILL))
    killer.start()
    t0 = time.perf_counter()
    out["killed"] = load(url, req.pair, 8, seconds, timeout_s=5.0)
    out["killed"]["wall_s"] = time.perf_counter() - t0
    server.stop()
    t0 = time.perf_counter()
    server = TritonServer(repo, ports).start()
    out["restart_s"] = time.perf_counter() - t0
    out["after_restart"] = load(server.grpc_url, req.pair, 8, min(seconds, 3.0))
    out["server"] = server
    return out


def table(results: list[dict]) -> Table:
    t = Table(title="fbinfer serve under load (gRPC clients, ONNX Runtime fp32 in Triton's Python backend)")
    for col in ("model", "shape", "clients", "req/s", "pairs/s", "p50 ms", "p95 ms", "p99 ms", "errors", "batches formed (size: count)"):
        t.add_column(col)
    for res in results:
        for r in res["runs"]:
            t.add_row(res["model"], r["shape"], str(r["clients"]), f"{r['requests_per_s']:.1f}", f"{r['pairs_per_s']:.0f}",
                      f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}", f"{r['p99_ms']:.1f}", str(r["errors"]),
                      ", ".join(f"{k}: {v}" for k, v in r["batches_formed"].items()))
    return t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+", type=Path)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    console = terminal.console()
    results = []
    for bundle in args.bundles:
        console.print(f"[bold]{bundle}[/]")
        results.append(bench_bundle(bundle, args.seconds, [int(c) for c in args.clients.split(",")], console))
    console.print(table(results))
    for res in results:
        sat = max(r["pairs_per_s"] for r in res["runs"] if r["shape"] == "pair")
        ip = res["in_process"]["pair"]["pairs_per_s"]
        half, f = res["half_load"], res["faults"]
        console.print(f"{res['model']}: saturated pair scoring {sat:.0f} pairs/s = {sat / ip:.0%} of in-process {ip:.0f}; "
                      f"rank {max(r['pairs_per_s'] for r in res['runs'] if r['shape'] == 'rank'):.0f} vs in-process "
                      f"{res['in_process']['rank']['pairs_per_s']:.0f} pairs/s; half load p99/p50 {half['p99_ms'] / half['p50_ms']:.2f}; "
                      f"mixed: {f['mixed_good']['errors']} good failed, {f['mixed_bad']['errors']} of "
                      f"{f['mixed_bad']['errors'] + f['mixed_bad']['requests']} bad refused; killed: {f['killed']['errors']} errors, "
                      f"run ended in {f['killed']['wall_s']:.1f} s; restart {f['restart_s']:.1f} s, then "
                      f"{f['after_restart']['requests']} ok / {f['after_restart']['errors']} errors")
    if args.json:
        args.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
