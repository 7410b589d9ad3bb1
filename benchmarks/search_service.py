"""Served search at catalogue scale: ``fbinfer serve BUNDLE --index`` (the real command, REST front
and Triton) against the same search in-process (``CatalogIndex.search`` with ``fbinfer.load``), in
one run, in turns; then items added while clients query, and the server killed and restarted.

    python benchmarks/search_service.py --model embed.pt --data DATA --rerank student.bundle --items 100000 \\
        --json docs/results/search_service.json

- Throughput: closed-loop REST clients (threads in this process, on the same 2 cores as the
  server: what they cost is part of the served figure) at each ``--clients`` level for
  ``--seconds``; the best is the saturated rate. In-process: one caller, the library's call.
- Latency at half load: an open loop paced at half the saturated rate, p50 / p99.
- Adds under load: two clients loop while ``add_to_index`` appends ``--add`` items; every answer
  must be 200, and the count must move from the old version to the new.
- Restart: the server is killed (SIGKILL to its process group) during load, started again on the
  same ports, and must answer the same queries with the same ids and scores as before.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from rich.table import Table

from fbinfer import terminal

sys.path.insert(0, str(Path(__file__).parent))
from search_scale import grown_index

import fbinfer
from fbinfer.bundle import Bundle
from fbinfer.data.source import DataSource, load_data
from fbinfer.errors import FbinferError
from fbinfer.fileio import sha256
from fbinfer.machine import cpu_flags
from fbinfer.search.index import add_to_index
from fbinfer.serve.server import Ports


def post(url: str, body: dict | bytes, timeout: float = 120) -> tuple[int, dict]:
    """(status, JSON answer) of a POST; status 0 where the connection failed."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")
    except OSError as e:
        return 0, {"message": str(e)}


class Server:
    """``fbinfer serve`` as a user starts it, in its own process group."""

    def __init__(self, bundle: Path, index: Path, depth: int, ports: Ports, log: Path):
        self.ports = ports
        self.args = [sys.executable, "-m", "fbinfer.cli", "serve", str(bundle), "--index", str(index), "--depth", str(depth),
                     "--http-port", str(ports.http), "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics),
                     "--rest-port", str(ports.rest)]
        self.url, self.log, self.process = f"http://localhost:{ports.rest}", log, None

    def start(self, timeout_s: float = 300) -> float:
        t0 = time.monotonic()
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        while time.monotonic() - t0 < timeout_s:
            if self.process.poll() is not None:
                raise SystemExit(f"fbinfer serve exited ({self.process.returncode}); see {self.log}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - t0
            except OSError:
                pass
            time.sleep(0.5)
        raise SystemExit(f"fbinfer serve not ready after {timeout_s:.0f} s; see {self.log}")

    def stop(self, kill: bool = False) -> int:
        if kill:
            os.killpg(self.process.pid, signal.SIGKILL)
        else:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(60)
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # anything left of the tree
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 30  # tritonserver dies with its parent (PR_SET_PDEATHSIG); its ports free soon after
        while True:
            try:
                self.ports.check_free()
                return code
            except FbinferError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)


def closed_loop(url: str, queries: list[str], k: int, clients: int, seconds: float) -> dict:
    """``clients`` threads, each sending its next query as soon as the last is answered."""
    stop, lat, failed = threading.Event(), [], []

    def client(c: int) -> None:
        i = c
        while not stop.is_set():
            t0 = time.perf_counter()
            status, body = post(f"{url}/v1/search", {"query": queries[i % len(queries)], "k": k})
            (lat if status == 200 else failed).append(1000 * (time.perf_counter() - t0) if status == 200 else (status, body))
            i += clients

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"clients": clients, "queries_per_s": round(len(lat) / wall, 2), "answered": len(lat), "failed": len(failed),
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1)}


def paced(url: str, queries: list[str], k: int, rate: float, seconds: float) -> dict:
    """An open loop: one query every 1 / ``rate`` s on its own thread, whatever the answers do."""
    lat, failed, threads = [], [], []

    def one(q: str) -> None:
        t0 = time.perf_counter()
        status, body = post(f"{url}/v1/search", {"query": q, "k": k})
        (lat if status == 200 else failed).append(1000 * (time.perf_counter() - t0) if status == 200 else (status, body))

    start = time.perf_counter()
    for n in range(int(rate * seconds)):
        time.sleep(max(0.0, start + n / rate - time.perf_counter()))
        threads.append(threading.Thread(target=one, args=(queries[n % len(queries)],), daemon=True))
        threads[-1].start()
    for t in threads:
        t.join()
    return {"rate_per_s": round(rate, 2), "answered": len(lat), "failed": len(failed),
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1)}


def in_process(index, matcher, queries: list[str], k: int, depth: int, seconds: float) -> dict:
    lat = []
    t_end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        index.search(text=queries[i % len(queries)], k=k, rerank=matcher, depth=depth)
        lat.append(1000 * (time.perf_counter() - t0))
        i += 1
    return {"clients": 1, "queries_per_s": round(len(lat) / (sum(lat) / 1000), 2), "answered": len(lat),
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1)}


def adds_under_load(server: Server, index_folder: Path, data: DataSource, queries: list[str], k: int) -> dict:
    before = post(f"{server.url}/v1/search", {"query": queries[0], "k": k})[1]["count"]
    stop, answers = threading.Event(), [[], []]

    def client(out: list) -> None:
        i = 0
        while not stop.is_set():
            out.append(post(f"{server.url}/v1/search", {"query": queries[i % len(queries)], "k": k}))
            i += 1

    threads = [threading.Thread(target=client, args=(a,), daemon=True) for a in answers]
    for t in threads:
        t.start()
    time.sleep(2)
    t0 = time.perf_counter()
    add_to_index(index_folder, data, split="test")
    add_s = time.perf_counter() - t0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(not a or a[-1][1].get("count") == before for a in answers):
        time.sleep(0.2)
    seen_new = time.perf_counter() - t0
    time.sleep(2)
    stop.set()
    for t in threads:
        t.join()
    flat = [a for a in answers for a in a]
    counts = [[x[1].get("count") for x in a if x[0] == 200] for a in answers]
    return {"added": len(data.test), "before": before, "after": counts[0][-1] if counts[0] else None, "requests": len(flat),
            "failed": sum(1 for s, _ in flat if s != 200), "add_s": round(add_s, 1), "new_version_served_after_s": round(seen_new, 1),
            "monotonic_per_client": all(c == sorted(c) for c in counts)}


def tuned_plan(bundle: Bundle, backend: str) -> dict | None:
    """The plan fbinfer tune chose for the backend that ran (``openvino:GRAPH`` names it with its graph)."""
    return (bundle.manifest.get("tuning") or {}).get("plans", {}).get(backend.split(":")[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="the embedding model (embed.pt)")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--rerank", type=Path, required=True, help="the reranker's bundle (its tuned plan is used, as fbinfer serve does)")
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--noise", type=float, default=0.03)
    ap.add_argument("--depth", type=int, default=32)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--clients", default="1,2,4,8")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--work", type=Path, default=Path("runs/service"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    console = terminal.console()
    args.work.mkdir(parents=True, exist_ok=True)
    data = load_data(args.data)
    folder = args.work / f"catalog{args.items}.index"
    index, build_s = grown_index(args.model, data, args.items, args.noise, folder)
    queries = list(dict.fromkeys(it.text for it in data.test))
    matcher = fbinfer.load(args.rerank)
    index.search(text=queries[0], k=args.k, rerank=matcher, depth=args.depth)  # warm-up
    bundle = Bundle.open(args.rerank)
    server = Server(args.rerank, folder, args.depth, Ports.free(), args.work / "serve.log")
    start_s = server.start()
    try:
        levels = [int(c) for c in args.clients.split(",")]
        rounds = []
        for _ in range(2):  # in turns: in-process, then each served level, twice
            rounds.append({"in_process": in_process(index, matcher, queries, args.k, args.depth, args.seconds)})
            rounds[-1]["served"] = [closed_loop(server.url, queries, args.k, c, args.seconds) for c in levels]
            console.print(rounds[-1])
        best = max((r for rd in rounds for r in rd["served"]), key=lambda r: r["queries_per_s"])
        inproc = float(np.mean([rd["in_process"]["queries_per_s"] for rd in rounds]))
        half = paced(server.url, queries, args.k, best["queries_per_s"] / 2, args.seconds)
        reference = {q: post(f"{server.url}/v1/search", {"query": q, "k": args.k})[1]["results"] for q in queries[:8]}
        killed_at = time.perf_counter()
        loader = threading.Thread(target=closed_loop, args=(server.url, queries, args.k, 2, 4.0), daemon=True)
        loader.start()
        time.sleep(2)
        server.stop(kill=True)
        loader.join()
        restart_s = server.start()
        same = all(post(f"{server.url}/v1/search", {"query": q, "k": args.k})[1]["results"] == r for q, r in reference.items())
        recovery = {"killed": "SIGKILL to the server's process group under 2 clients", "restart_s": round(restart_s, 1),
                    "down_s": round(time.perf_counter() - killed_at, 1), "same_results_after_restart": same}
        adds = adds_under_load(server, folder, data, queries, args.k)
        code = server.stop()
    finally:
        if server.process.poll() is None:
            server.stop(kill=True)
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": {"cpus": os.cpu_count(), "cpu": cpu_flags()},
        "models": {"embedder": {"path": str(args.model), "sha256": sha256(args.model)},
                   "reranker": {"bundle": str(args.rerank), "checkpoint_sha256": bundle.manifest["source"]["sha256"],
                                "backend": matcher.backend, "tuned_plan": tuned_plan(bundle, matcher.backend)}},
        "index": {"items": args.items, "kind": index.meta["kind"], "write_s": round(build_s, 1), "noise": args.noise},
        "depth": args.depth, "k": args.k, "server_start_s": round(start_s, 1), "rounds": rounds,
        "saturated": best, "in_process_queries_per_s": round(inproc, 2),
        "served_over_in_process": round(best["queries_per_s"] / inproc, 3), "half_load": half, "restart": recovery,
        "adds_under_load": adds, "sigterm_exit_code": code,
    }
    t = Table(title=f"served search over {args.items:,} items, rerank depth {args.depth} (2 cores)")
    for c in ("path", "clients", "queries/s", "p50 ms", "p99 ms", "failed"):
        t.add_column(c, justify="right")
    for rd in rounds:
        r = rd["in_process"]
        t.add_row("in-process", "1", str(r["queries_per_s"]), str(r["p50_ms"]), str(r["p99_ms"]), "-")
        for r in rd["served"]:
            t.add_row("served (REST)", str(r["clients"]), str(r["queries_per_s"]), str(r["p50_ms"]), str(r["p99_ms"]), str(r["failed"]))
    t.add_row("served, half load", "open loop", str(half["rate_per_s"]), str(half["p50_ms"]), str(half["p99_ms"]), str(half["failed"]))
    console.print(t)
    console.print(f"served / in-process: {result['served_over_in_process']:.2f}; adds: {adds}; restart: {recovery}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
