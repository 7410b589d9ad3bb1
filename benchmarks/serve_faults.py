"""The serving fault suite, measured on the real ``fbinfer serve --index`` (issue 36): what fails, what
recovers, and how fast.

    python benchmarks/serve_faults.py --bundle student.bundle --index test.index --data DATA --json docs/results/serve_faults.json

1. Bad requests mixed into load: good clients loop on search and rerank while one client sends
   malformed and oversized requests (empty query, a 20 MB body, bad base64, an unknown id, too
   many documents, not JSON): good requests failed (goal 0), bad ones answered 4xx (goal all),
   server errors (goal 0).
2. A client that opens many connections and sends nothing (from 127.0.0.2, 200 connections)
   while good clients (127.0.0.1) loop: good requests failed, connections refused, and the time
   until the server has closed the idle ones.
3. ``fbinfer index add`` killed (SIGKILL) while it writes the new version, clients looping:
   failed requests, the index still whole, the add run again and served.
4. The server killed while an add runs, then restarted: time to serve again, and the index whole.
Small versions of each run in CI (tests/test_serve_search.py).
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Self

sys.path.insert(0, str(Path(__file__).parent))
from search_service import Server, post

from fbinfer.bundle import Bundle
from fbinfer.data.source import load_data
from fbinfer.fileio import sha256
from fbinfer.machine import cpu_flags
from fbinfer.search.index import CatalogIndex
from fbinfer.serve.server import Ports


class Load:
    """Good clients looping on search (and rerank of catalogue ids) until stopped."""

    def __init__(self, url: str, queries: list[str], clients: int = 3):
        self.url, self.queries, self.stop, self.answers = url, queries, threading.Event(), []
        self.threads = [threading.Thread(target=self._run, args=(c,), daemon=True) for c in range(clients)]

    def _run(self, c: int) -> None:
        i = c
        while not self.stop.is_set():
            q = self.queries[i % len(self.queries)]
            body, path = ({"query": q, "k": 5}, "search") if i % 2 else ({"query": q, "documents": [{"id": str(j)} for j in range(8)],
                                                                          "top_n": 3}, "rerank")
            self.answers.append(post(f"{self.url}/v1/{path}", body)[0])
            i += len(self.threads)

    def __enter__(self) -> Self:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join()

    def summary(self) -> dict:
        return {"good_requests": len(self.answers), "good_failed": sum(1 for s in self.answers if s != 200)}


def bad_requests(url: str, seconds: float) -> dict:
    import base64

    bad = [("/v1/search", {"query": " "}), ("/v1/search", {"query": "x" * (20 << 20)}),
           ("/v1/rerank", {"query": "dress", "documents": [{"image": "%%%"}]}),
           ("/v1/rerank", {"query": "dress", "documents": [{"id": "999999999"}]}),
           ("/v1/rerank", {"query": "dress", "documents": [{"id": "0"}] * 5000}),
           ("/v1/rerank", {"query": "dress", "documents": [{"image": base64.b64encode(b"not an image").decode()}]}),
           ("/v1/rerank", b"{not json")]
    codes, end, i = [], time.monotonic() + seconds, 0
    while time.monotonic() < end:
        path, body = bad[i % len(bad)]
        codes.append(post(f"{url}{path}", body)[0])
        i += 1
    return {"bad_requests": len(codes), "bad_answered_4xx": sum(400 <= c < 500 for c in codes), "server_errors": sum(c >= 500 or c == 0 for c in codes)}


def idle_connections(url: str, port: int, count: int, idle_timeout: float) -> dict:
    socks, refused = [], 0
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", port))
        socks.append(s)
    time.sleep(0.5)
    for s in socks:
        s.settimeout(0.05)
        try:
            if s.recv(20).startswith(b"HTTP/1.1 429"):
                refused += 1
        except TimeoutError:
            pass
    t0 = time.monotonic()
    open_ = [s for s in socks]
    while open_ and time.monotonic() - t0 < idle_timeout + 30:
        still = []
        for s in open_:
            s.settimeout(0.05)
            try:
                if s.recv(20) != b"":
                    still.append(s)
            except TimeoutError:
                still.append(s)
            except OSError:
                pass
        open_ = still
        time.sleep(0.2)
    closed_after = time.monotonic() - t0
    for s in socks:
        s.close()
    return {"connections": count, "refused_429": refused, "all_closed_after_s": round(closed_after, 1), "left_open": len(open_)}


def kill_add(index: Path, data: Path, when: str = "patches") -> None:
    proc = subprocess.Popen([sys.executable, "-m", "fbinfer.cli", "index", "add", str(index), "--data", str(data), "--split", "test"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not any(index.parent.glob(f".{index.name}.*.tmp/{when}.npy")):
        if proc.poll() is not None:
            raise SystemExit("index add ended before the kill")
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--index", type=Path, required=True, help="copied: the suite adds to the copy")
    ap.add_argument("--data", type=Path, required=True, help="the data whose test split is added")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--work", type=Path, default=Path("runs/faults"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    index = args.work / "catalog.index"
    shutil.rmtree(index, ignore_errors=True)
    shutil.copytree(args.index, index)
    queries = list(dict.fromkeys(it.text for it in load_data(args.data).test))
    ports = Ports.free()
    server = Server(args.bundle, index, 32, ports, args.work / "serve.log")
    server.args += ["--max-connections-per-client", "32", "--idle-timeout-s", "10"]
    out: dict = {"date": time.strftime("%Y-%m-%d"), "cpu": cpu_flags(),
                 "models": {"reranker_checkpoint_sha256": Bundle.open(args.bundle).manifest["source"]["sha256"],
                            "embedder_sha256": CatalogIndex(index).meta["model_sha256"]},
                 "index_items": len(CatalogIndex(index)), "server_start_s": round(server.start(), 1)}
    try:
        with Load(server.url, queries) as load:
            out["bad_requests_in_load"] = bad_requests(server.url, args.seconds)
        out["bad_requests_in_load"].update(load.summary())
        with Load(server.url, queries) as load:
            out["idle_connections"] = idle_connections(server.url, ports.rest, 200, 10)
        out["idle_connections"].update(load.summary())
        before = len(CatalogIndex(index))
        with Load(server.url, queries) as load:
            kill_add(index, args.data)
            whole = len(CatalogIndex(index)) == before
            t0 = time.monotonic()
            subprocess.run([sys.executable, "-m", "fbinfer.cli", "index", "add", str(index), "--data", str(args.data), "--split", "test"],
                           check=True, capture_output=True)
            while post(f"{server.url}/v1/search", {"query": queries[0], "k": 1})[1].get("count") == before and time.monotonic() - t0 < 120:
                time.sleep(0.2)
            served_after = time.monotonic() - t0
        out["add_killed"] = {**load.summary(), "index_whole_after_kill": whole, "rerun_served_after_s": round(served_after, 1),
                             "items": len(CatalogIndex(index))}
        before = len(CatalogIndex(index))
        proc = subprocess.Popen([sys.executable, "-m", "fbinfer.cli", "index", "add", str(index), "--data", str(args.data), "--split", "test"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not any(index.parent.glob(f".{index.name}.*.tmp/patches.npy")) and proc.poll() is None:
            time.sleep(0.01)
        t0 = time.monotonic()
        server.stop(kill=True)
        proc.wait()
        restart = server.start()
        status, body = post(f"{server.url}/v1/search", {"query": queries[0], "k": 3})
        out["server_killed_during_add"] = {"add_exit": proc.returncode, "items_before": before, "items_after": len(CatalogIndex(index)),
                                           "served_again_after_s": round(time.monotonic() - t0, 1), "restart_s": round(restart, 1),
                                           "first_answer": status, "count_served": body.get("count")}
        out["sigterm_exit_code"] = server.stop()
    finally:
        if server.process.poll() is None:
            server.stop(kill=True)
    out["index_sha256_after"] = {f: sha256(index / f)[:16] for f in ("items.jsonl", "patches.npy")}
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
