"""The REST front of ``fbinfer serve``: the request shapes that rerank and search clients already
speak, answered by the Triton models ``rerank`` and ``search`` over gRPC.

    POST /v1/rerank (and /v2/rerank)  Cohere / Jina / text-embeddings-inference form:
         {model?, query, documents, top_n?, return_documents?}
         -> {id, results: [{index, relevance_score, match_logit, document?}], meta}
    POST /v1/search  {query?: caption, image?: base64, k?: 10, depth?: the server's} ->
         {results: [{id, score, rerank_score, image, text, product_id, ...}], count}
    GET  /health     200 once Triton's models are ready (no key needed)

A query is a caption (a string, or {"text": ...}) or an image ({"image": base64} or {"id": item}).
A document is what the query is not: images ({"image": base64} or {"id": item id}) for a caption,
captions (strings, {"text": ...} or {"id": item id}) for an image. ``relevance_score`` is
FashionBERT's match probability, sigmoid(logit), in [0, 1] as Cohere's clients expect.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from fbinfer.errors import FbinferError
from fbinfer.serve.config import Limits

DRAIN = 4  # bodies up to this many times the limit are read and dropped before the 413


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _decode_image(value: Any, where: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{where}: give the image as a base64 string")
    try:
        blob = base64.b64decode(value.split(",", 1)[1] if value.startswith("data:") else value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{where}: not base64") from None
    if not blob:
        raise ApiError(400, f"{where}: the image is empty")
    return blob


def _item_id(value: Any, where: str) -> int:
    """A catalogue row, as an integer or its digits (Cohere's documents are string maps)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ApiError(400, f"{where}: {value!r} is not an item id (a catalogue row, as /v1/search returns)")


def parse_input(value: Any, where: str, limits: Limits) -> tuple[str, Any]:
    """("text" | "image" | "id", value) of a query or a document."""
    if isinstance(value, str):
        value = {"text": value}
    if not isinstance(value, dict):
        raise ApiError(400, f"{where}: give a string or an object with text, image or id")
    given = [k for k in ("text", "image", "id") if k in value]
    if len(given) != 1:
        raise ApiError(400, f"{where}: give exactly one of text, image or id")
    kind = given[0]
    if kind == "text":
        text = value["text"]
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, f"{where}: the text is empty")
        if len(text) > limits.caption_chars:
            raise ApiError(400, f"{where}: {len(text)} characters, above the limit of {limits.caption_chars}")
        return kind, text
    return kind, _decode_image(value["image"], f"{where}.image") if kind == "image" else _item_id(value["id"], f"{where}.id")


def _count(body: dict, name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, f"{name} {value!r}: must be an integer from {low} to {high}")
    return value


def _input(module, name: str, array: np.ndarray) -> Any:
    """A Triton input of ``array``, typed by tritonclient's own numpy -> Triton mapping."""
    from tritonclient.utils import np_to_triton_dtype

    t = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    t.set_data_from_numpy(array)
    return t


def _values(values: list) -> np.ndarray:
    """Captions and encoded images as a BYTES array, item ids as INT64."""
    if isinstance(values[0], int):
        return np.array(values, np.int64)
    return np.array([v.encode() if isinstance(v, str) else v for v in values], dtype=object)


class RestFront:
    """The front over a running Triton (``grpc_url``); ``start`` serves it on a thread.

    Example:
        front = RestFront("localhost:8001", port=8080).start()
        ...
        front.stop()
    """

    def __init__(self, grpc_url: str, port: int = 8080, api_key: str | None = None, limits: Limits | None = None,
                 model: str = "fashionbert", search: bool = True):
        import tritonclient.grpc as tg

        self.tg, self.client = tg, tg.InferenceServerClient(grpc_url)  # thread-safe
        self.port, self.api_key, self.limits, self.model, self.search_served = port, api_key, limits or Limits(), model, search
        self.httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ---- the endpoints ---------------------------------------------------------------------------
    def rerank(self, body: dict) -> dict:
        docs = body.get("documents")
        if not isinstance(docs, list) or not docs:
            raise ApiError(400, "documents: give a non-empty list")
        if len(docs) > self.limits.documents:
            raise ApiError(400, f"documents: {len(docs)}, above the limit of {self.limits.documents} per request")
        q_kind, query = parse_input(body.get("query"), "query", self.limits)
        parsed = [parse_input(d, f"documents[{i}]", self.limits) for i, d in enumerate(docs)]
        kinds = {k for k, _ in parsed}
        if len(kinds) > 1:
            raise ApiError(400, "documents: give them all of one kind (all captions, all images or all ids)")
        d_kind = kinds.pop()
        if d_kind == ("text" if q_kind == "text" else "image"):
            raise ApiError(400, "FashionBERT matches captions with images: a caption query ranks images ({\"image\": base64} or "
                                "{\"id\": item}), an image query ranks captions (strings or {\"id\": item})")
        top_n = _count(body, "top_n", len(docs), 1, self.limits.documents)
        tg = self.tg
        q_name = {"text": "QUERY_TEXT", "image": "QUERY_IMAGE", "id": "QUERY_ID"}[q_kind]
        d_name = {"text": "CANDIDATE_TEXTS", "image": "CANDIDATE_IMAGES", "id": "CANDIDATE_IDS"}[d_kind]
        r = self._infer("rerank", [_input(tg, q_name, _values([query])), _input(tg, d_name, _values([v for _, v in parsed])),
                                   _input(tg, "K", np.array([min(top_n, len(docs))], np.int32))])
        results = []
        for i, logit in zip(r.as_numpy("INDICES").tolist(), r.as_numpy("SCORES").tolist()):
            row = {"index": i, "relevance_score": 1 / (1 + math.exp(-logit)), "match_logit": logit}
            if body.get("return_documents"):
                row["document"] = docs[i] if isinstance(docs[i], dict) else {"text": docs[i]}
            results.append(row)
        return {"id": uuid.uuid4().hex, "results": results, "model": body.get("model") or self.model,
                "meta": {"api_version": {"version": "1"}, "billed_units": {"search_units": 1}}}

    def search(self, body: dict) -> dict:
        if not self.search_served:
            raise ApiError(404, "/v1/search: no catalogue is served (start fbinfer serve with --index)")
        tg, inputs = self.tg, []
        if body.get("query") is not None:
            kind, text = parse_input(body["query"], "query", self.limits)
            if kind != "text":
                raise ApiError(400, "query: a caption here; send an image query as image (base64)")
            inputs.append(_input(tg, "TEXT", _values([text])))
        if body.get("image") is not None:
            inputs.append(_input(tg, "IMAGE", _values([_decode_image(body["image"], "image")])))
        if not inputs:
            raise ApiError(400, "give a query (a caption), an image (base64), or both")
        inputs.append(_input(tg, "K", np.array([_count(body, "k", 10, 1, self.limits.documents)], np.int32)))
        if "depth" in body:  # else the server's --depth
            inputs.append(_input(tg, "DEPTH", np.array([_count(body, "depth", None, 0, self.limits.documents)], np.int32)))
        r = self._infer("search", inputs)
        results = []
        for row, score, rerank, item in zip(r.as_numpy("ROWS").tolist(), r.as_numpy("SCORES").tolist(), r.as_numpy("RERANK").tolist(),
                                            r.as_numpy("ITEMS").tolist()):
            fields = {k: v for k, v in json.loads(item).items() if k != "patch_row"}
            results.append({"id": row, "score": score, "rerank_score": None if math.isnan(rerank) else rerank, **fields})
        return {"results": results, "count": int(r.as_numpy("COUNT")[0])}

    def _infer(self, model: str, inputs: list):
        try:
            return self.client.infer(model, inputs)
        except self.tg.InferenceServerException as e:
            status = 400 if "INVALID_ARG" in str(e.status()) else 503
            raise ApiError(status, e.message() or str(e)) from None

    def ready(self) -> bool:
        try:
            return bool(self.client.is_server_ready())
        except self.tg.InferenceServerException:
            return False

    # ---- the server ------------------------------------------------------------------------------
    def start(self) -> RestFront:
        try:
            self.httpd = _Server(("0.0.0.0", self.port), _handler(self), self.limits.connections_per_client)
        except OSError as e:
            raise FbinferError(f"--rest-port {self.port}: cannot listen ({e.strerror})") from None
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="fbinfer-rest", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
        self.client.close()


class _Server(ThreadingHTTPServer):
    """One thread per connection, at most ``per_client`` open connections per address: a client
    that opens many and sends nothing holds its own share only (each also closes after the
    handler's idle timeout)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # the listen backlog (socketserver's 5 leaves bursts of clients half-connected)

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], per_client: int):
        super().__init__(address, handler)
        self.per_client, self.active, self.lock = per_client, Counter(), threading.Lock()

    def process_request(self, request, client_address) -> None:
        host = client_address[0]
        with self.lock:
            refused = self.active[host] >= self.per_client
            if not refused:
                self.active[host] += 1
        if refused:
            body = json.dumps({"message": f"more than {self.per_client} open connections from {host}"}).encode()
            try:
                request.sendall(b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nConnection: close\r\n"
                                + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.lock:
                self.active[client_address[0]] -= 1


def _handler(front: RestFront) -> type[BaseHTTPRequestHandler]:
    routes = {"/v1/rerank": front.rerank, "/v2/rerank": front.rerank, "/v1/search": front.search}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fbinfer"
        timeout = front.limits.idle_timeout_s  # on the socket: an idle or stalled connection is closed

        def log_message(self, *args) -> None:  # no line per request on stderr
            pass

        def _send(self, status: int, payload: dict) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path.split("?")[0] == "/health":
                ok = front.ready()
                self._send(200 if ok else 503, {"status": "ok" if ok else "not ready"})
            else:
                self._send(404, {"message": f"{self.path}: no such endpoint (POST /v1/rerank, /v1/search; GET /health)"})

        def do_POST(self) -> None:
            route = routes.get(self.path.split("?")[0])
            try:
                if route is None:
                    raise ApiError(404, f"{self.path}: no such endpoint (POST /v1/rerank, /v1/search; GET /health)")
                if front.api_key is not None and not hmac.compare_digest(self.headers.get("Authorization", ""), f"Bearer {front.api_key}"):
                    raise ApiError(401, "missing or wrong API key (send Authorization: Bearer KEY)")
                length = self.headers.get("Content-Length")
                if length is None or not length.isdigit():
                    raise ApiError(411, "the request needs a Content-Length")
                if int(length) > front.limits.body_bytes:
                    self.close_connection = True
                    left = int(length) if int(length) <= DRAIN * front.limits.body_bytes else 0
                    while left > 0:  # read and dropped, so that the client sees the 413 rather than a reset mid-send
                        chunk = self.rfile.read(min(1 << 20, left))
                        if not chunk:
                            break
                        left -= len(chunk)
                    raise ApiError(413, f"the body is {int(length)} bytes, above the limit of {front.limits.body_bytes}")
                try:
                    body = json.loads(self.rfile.read(int(length)))
                except (json.JSONDecodeError, UnicodeDecodeError):
                    raise ApiError(400, "the body is not JSON") from None
                if not isinstance(body, dict):
                    raise ApiError(400, "the body must be a JSON object")
                self._send(200, route(body))
            except ApiError as e:
                self._send(e.status, {"message": e.message})
            except Exception as e:  # noqa: BLE001 - one request's fault, not the server's end
                self._send(500, {"message": f"{type(e).__name__}: {e}"})

    return Handler

