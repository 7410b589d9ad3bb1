"""``fbinfer serve --index``: the real command on free ports, its REST front spoken to by Cohere's own
SDK and by plain HTTP. Served search equals in-process search on the same index (ids and scores),
rerank equals ``fbinfer.load``'s ranking, bad requests get their reason while good ones around them
are answered, items added while a client queries become searchable without a failed request, and
SIGTERM stops the whole process tree."""
from __future__ import annotations

import base64
import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import kill_when

pytest.importorskip("tritonclient.grpc", reason="serving needs the serve extra: pip install -e '.[serve]'")
pytest.importorskip("faiss", reason="catalogue search needs the search extra: pip install -e '.[search]'")
if __import__("importlib.util").util.find_spec("pytriton") is None:
    pytest.skip("the Triton server binary is not installed (pip install -e '.[serve]')", allow_module_level=True)

from fbinfer.data.source import load_data
from fbinfer.search.index import CatalogIndex, add_to_index
from fbinfer.serve.server import Ports

KEY = "s3cret-for-tests"
DEPTH = 8


@dataclass
class Served:
    url: str
    index: Path
    process: subprocess.Popen


def post(url: str, body: dict | bytes, key: str | None = KEY) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json",
                                                         **({"Authorization": f"Bearer {key}"} if key else {})})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture(scope="module")
def served(tiny_bundle, test_index, tmp_path_factory):
    index = tmp_path_factory.mktemp("served") / "catalog.index"
    shutil.copytree(test_index, index)  # the test adds to it
    ports = Ports.free()
    key_file = index.parent / "key.txt"
    key_file.write_text(KEY + "\n")
    p = subprocess.Popen([sys.executable, "-m", "fbinfer.cli", "serve", str(tiny_bundle), "--index", str(index), "--depth", str(DEPTH),
                          "--http-port", str(ports.http), "--grpc-port", str(ports.grpc), "--metrics-port", str(ports.metrics),
                          "--rest-port", str(ports.rest), "--max-batch", "16", "--ranking-instances", "2", "--max-documents", "50",
                          "--max-body-mb", "1", "--api-key-file", str(key_file), "--max-connections-per-client", "16",
                          "--idle-timeout-s", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://localhost:{ports.rest}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.3)
    else:
        p.kill()
        pytest.fail(f"fbinfer serve --index did not become ready: {p.communicate()[0][-3000:]}")
    yield Served(url, index, p)
    p.send_signal(signal.SIGTERM)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0, out[-3000:]


@pytest.fixture(scope="module")
def matcher(tiny_bundle):
    import fbinfer

    return fbinfer.load(tiny_bundle, backend="onnxruntime")


@pytest.fixture(scope="module")
def items(tiny_data):
    return load_data(tiny_data).test


def b64(path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def test_served_search_equals_in_process(served, matcher, items):
    index = CatalogIndex(served.index)
    for it in items[:4]:
        status, got = post(f"{served.url}/v1/search", {"query": it.text, "k": 5})
        assert status == 200, got
        want = index.search(text=it.text, k=5, rerank=matcher, depth=DEPTH)
        assert [r["id"] for r in got["results"]] == [h.row for h in want]
        assert np.allclose([r["score"] for r in got["results"]], [h.score for h in want], atol=1e-5)
        assert np.allclose([r["rerank_score"] for r in got["results"]], [h.rerank for h in want], atol=1e-4)
        assert got["results"][0]["text"] == want[0].item["text"] and got["count"] == len(index)
    spread = [h.rerank for h in index.search(text=items[0].text, k=DEPTH, rerank=matcher, depth=DEPTH)]
    assert np.std(spread) > 0.1  # reranker scores that differ: a reversed or shuffled order cannot pass
    status, got = post(f"{served.url}/v1/search", {"query": items[1].text, "k": 3, "depth": 0})
    assert status == 200 and [r["id"] for r in got["results"]] == [h.row for h in index.search(text=items[1].text, k=3)]
    assert all(r["rerank_score"] is None for r in got["results"])
    image = Path(index.items[2]["image"])
    status, got = post(f"{served.url}/v1/search", {"image": b64(image), "k": 3})
    assert status == 200 and [r["id"] for r in got["results"]] == [h.row for h in index.search(image=image.read_bytes(), k=3)]


def test_rerank_through_the_cohere_sdk(served, matcher, items):
    cohere = pytest.importorskip("cohere", reason="the rerank client test needs the cohere SDK (in the test extra)")
    index = CatalogIndex(served.index)
    co = cohere.Client(api_key=KEY, base_url=served.url)
    rows = list(range(min(10, len(index))))
    query = items[3].text
    r = co.rerank(model="fashionbert", query=query, documents=[{"id": str(i)} for i in rows], top_n=4, return_documents=True)
    want = matcher.rank(query, index.item_patches(rows), k=4)
    assert [x.index for x in r.results] == want.indices.tolist()
    assert np.allclose([x.relevance_score for x in r.results], 1 / (1 + np.exp(-want.scores)), atol=1e-5)
    assert r.results[0].document is not None
    images = [Path(index.items[i]["image"]) for i in rows[:5]]
    r = co.rerank(query=query, documents=[{"image": b64(p)} for p in images], top_n=5)
    assert [x.index for x in r.results] == matcher.rank(query, [p.read_bytes() for p in images], k=5).indices.tolist()
    captions = [it.text for it in items[:6]]
    status, got = post(f"{served.url}/v1/rerank", {"query": {"image": b64(images[0])}, "documents": captions, "top_n": 3})
    want = matcher.rank(images[0].read_bytes(), captions, k=3, direction="image_to_text")
    assert status == 200 and [x["index"] for x in got["results"]] == want.indices.tolist()
    with pytest.raises(cohere.errors.UnauthorizedError):
        cohere.Client(api_key="wrong", base_url=served.url).rerank(query=query, documents=[{"id": "0"}])
    with urllib.request.urlopen(f"{served.url}/health", timeout=5) as h:  # health needs no key
        assert h.status == 200


def test_bad_requests_get_their_reason_and_good_ones_are_answered(served, items):
    good = {"query": items[0].text, "documents": [{"id": "0"}, {"id": "1"}, {"id": "2"}], "top_n": 2}
    _, want = post(f"{served.url}/v1/rerank", good)
    bad = {
        "empty query": ({"query": " ", "documents": [{"id": "0"}]}, 400, "query: the text is empty"),
        "top_n 0": ({**good, "top_n": 0}, 400, "top_n 0"),
        "unknown id": ({**good, "documents": [{"id": "0"}, {"id": "99999"}]}, 400, "unknown item id 99999"),
        "too many documents": ({**good, "documents": [{"id": "0"}] * 51}, 400, "above the limit of 50"),
        "caption documents for a caption": ({**good, "documents": ["a dress"]}, 400, "matches captions with images"),
        "not base64": ({**good, "documents": [{"image": "%%%"}]}, 400, "documents[0].image: not base64"),
        "corrupt image": ({**good, "documents": [{"image": base64.b64encode(b"not an image").decode()}]}, 400, "image"),
        "body too large": ({**good, "pad": "x" * (1 << 20)}, 413, "above the limit"),
        "no key": (good, 401, "API key"),
    }

    def send(name):
        body, _, _ = bad[name]
        return post(f"{served.url}/v1/rerank", body, key=None if name == "no key" else KEY)

    with ThreadPoolExecutor(12) as pool:
        goods = [pool.submit(post, f"{served.url}/v1/rerank", good) for _ in range(8)]
        bads = {name: pool.submit(send, name) for name in bad}
        goods += [pool.submit(post, f"{served.url}/v1/rerank", good) for _ in range(8)]
    for f in goods:
        status, got = f.result()
        assert status == 200 and [x["index"] for x in got["results"]] == [x["index"] for x in want["results"]]
    for name, f in bads.items():
        status, got = f.result()
        assert (status, bad[name][2] in got.get("message", "")) == (bad[name][1], True), (name, status, got)
    assert post(f"{served.url}/v1/rerank", b"{not json")[0] == 400
    status, got = post(f"{served.url}/v1/search", {"query": {"id": "1"}})
    assert status == 400 and "query: a caption" in got["message"]


def test_items_added_while_serving_are_found_without_a_failed_request(served, tiny_data):
    data = load_data(tiny_data)
    before = post(f"{served.url}/v1/search", {"query": data.train[0].text, "k": 1})[1]["count"]
    stop, per_client = threading.Event(), [[], []]

    def client(answers: list):
        while not stop.is_set():
            answers.append(post(f"{served.url}/v1/search", {"query": data.train[0].text, "k": 3}))

    threads = [threading.Thread(target=client, args=(answers,)) for answers in per_client]
    for t in threads:
        t.start()
    try:
        time.sleep(1.0)
        add_to_index(served.index, data, split="train")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(not a or a[-1][1].get("count") == before for a in per_client):
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    failed = [a for answers in per_client for a in answers if a[0] != 200]
    assert not failed, failed[:3]
    for answers in per_client:  # each client sees the old version, then the new, never back
        counts = [a[1]["count"] for a in answers]
        assert counts[0] == before and counts[-1] == before + len(data.train) and counts == sorted(counts), counts
    status, got = post(f"{served.url}/v1/search", {"query": data.train[0].text, "k": 5, "depth": 0})
    assert status == 200 and any(r["id"] >= before for r in got["results"])  # an added item is among them


def test_idle_connections_hold_only_their_clients_share_and_time_out(served, items):
    """A client (127.0.0.2) that opens connections and sends nothing: past its 16 the server says
    429 and closes; another client (127.0.0.1) is answered all along; after the 2 s idle timeout
    the server has closed the idle ones and the first client is served again."""
    import socket

    port = int(served.url.rsplit(":", 1)[1])

    def connect() -> socket.socket:
        s = socket.socket()
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", port))
        return s

    idle = [connect() for _ in range(16)]
    try:
        time.sleep(0.3)
        extra = connect()
        extra.settimeout(5)
        assert extra.recv(100).startswith(b"HTTP/1.1 429")
        extra.close()
        assert post(f"{served.url}/v1/search", {"query": items[0].text, "k": 2})[0] == 200
        time.sleep(3)
        for s in idle:
            s.settimeout(1)
            assert s.recv(100) == b""  # closed by the server
        again = connect()
        again.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        again.settimeout(5)
        assert again.recv(100).startswith(b"HTTP/1.1 200")
        again.close()
    finally:
        for s in idle:
            s.close()


def test_an_add_killed_midway_leaves_the_served_index_whole(served, tiny_data):
    """kill -9 of fbinfer index add while its new folder is being written: the server keeps
    answering from the version it has, no request fails, the folder still opens (hashes match),
    and the add run again is picked up."""
    data = load_data(tiny_data)
    count = post(f"{served.url}/v1/search", {"query": data.test[0].text, "k": 1})[1]["count"]
    stop, answers = threading.Event(), []

    def client():
        while not stop.is_set():
            answers.append(post(f"{served.url}/v1/search", {"query": data.test[0].text, "k": 3, "depth": 0}))

    t = threading.Thread(target=client)
    t.start()
    try:
        args = ["index", "add", str(served.index), "--data", str(tiny_data), "--split", "test"]
        kill_when(args, lambda: any(served.index.parent.glob(f".{served.index.name}.*.tmp/patches.npy")))
        time.sleep(1)
        assert len(CatalogIndex(served.index)) == count
        assert subprocess.run([sys.executable, "-m", "fbinfer.cli", *args], check=False, capture_output=True).returncode == 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and answers[-1][1].get("count") != count + len(data.test):
            time.sleep(0.2)
    finally:
        stop.set()
        t.join()
    assert all(a[0] == 200 for a in answers), [a for a in answers if a[0] != 200][:3]
    assert answers[-1][1]["count"] == count + len(data.test)
    assert not list(served.index.parent.glob(f".{served.index.name}.*.tmp"))  # the dead run's temporary removed by the rerun
