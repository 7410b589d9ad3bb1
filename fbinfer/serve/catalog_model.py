"""The Triton Python-backend models that rank with the catalogue: ``rerank`` (one query against given
candidates) and ``search`` (the index's two stages). Neither runs FashionBERT itself: both send their
pairs to the server's own ``fashionbert`` model (and query images to ``image_features``) by Business
Logic Scripting, so Triton's dynamic batcher merges the rerank pairs of concurrent queries.

    rerank   QUERY_TEXT | QUERY_IMAGE | QUERY_PATCHES | QUERY_ID,
             CANDIDATE_TEXTS | CANDIDATE_IMAGES | CANDIDATE_PATCHES | CANDIDATE_IDS, K -> INDICES, SCORES
    search   TEXT and/or IMAGE, K, DEPTH (0: no rerank) -> ROWS, SCORES, RERANK, ITEMS (JSON), COUNT
             (a query with a caption is reranked; an image alone is answered by the dual encoder)

An id is a catalogue row (``search``'s ROWS). A QUERY_ID queries with the item's image; CANDIDATE_IDS
are scored by what the query is not (a caption query: the items' images; an image query: their
captions). The ``search`` model watches the index folder: a new version (``fbinfer index add``,
which replaces the folder whole) is opened beside the old and swapped in between two requests.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from fbinfer.errors import FbinferError
from fbinfer.search.index import CatalogIndex
from fbinfer.serve.triton_model import RequestError, _error, _optional, _strings, image_blobs, model_params, patch_array


class TritonMatcher:
    """The part of a FashionBERT ``Matcher`` that ``CatalogIndex.search`` uses, answered by the
    server's own batched models; requests larger than their max batch are sent in pieces."""

    def __init__(self, pb, bundle_folder: str, max_batch: int):
        from fbinfer.bundle import Bundle

        bundle = Bundle.open(bundle_folder, verify=False)  # verified by the fashionbert model's load
        self.pb, self.config, self.tokenizer, self.max_batch = pb, bundle.config, bundle.tokenizer(), max_batch

    def _infer(self, model: str, inputs: dict[str, np.ndarray], output: str) -> np.ndarray:
        pb, parts = self.pb, []
        n = len(next(iter(inputs.values())))
        for b in range(0, n, self.max_batch):
            request = pb.InferenceRequest(model_name=model, requested_output_names=[output],
                                          inputs=[pb.Tensor(k, v[b:b + self.max_batch]) for k, v in inputs.items()])
            response = request.exec()
            if response.has_error():
                raise RequestError(f"{model}: {response.error().message()}")
            parts.append(pb.get_output_tensor_by_name(response, output).as_numpy())
        return np.concatenate(parts)

    def score(self, texts: list[str], patches: np.ndarray) -> np.ndarray:
        """(N,) match logits of caption i with patch features i."""
        return self._infer("fashionbert", {"TEXT": np.array([[t.encode()] for t in texts], dtype=object),
                                           "PATCHES": np.ascontiguousarray(patches, dtype=np.float32)}, "LOGIT").ravel()

    def patch_features(self, images: list[bytes]) -> np.ndarray:
        """(N, P, D) patch features of encoded images."""
        return self._infer("image_features", {"IMAGE": np.array([[bytes(i)] for i in images], dtype=object)}, "PATCHES")


class LiveIndex:
    """The served catalogue index, reopened when its folder holds a new version. A folder being
    replaced (briefly absent) or a version that fails to open leaves the current one serving."""

    def __init__(self, folder: str):
        self.folder = Path(folder)
        self.index = CatalogIndex(self.folder)
        self.stamp = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            s = os.stat(self.folder / "index.json")
        except OSError:
            return None
        return s.st_ino, s.st_mtime_ns

    def current(self):
        stamp = self._stamp()
        if stamp is not None and stamp != self.stamp:
            try:
                self.index = CatalogIndex(self.folder, embedder=self.index.embedder)
                self.stamp = stamp
            except FbinferError:
                pass  # mid-replace or damaged: keep serving the version that works; the next request tries again
        return self.index


def share_cores(instances: int) -> None:
    """This instance's share of the cores for the query embedder (torch) and faiss (OpenMP): the
    ``instances`` copies run side by side, and each using every core oversubscribes them (measured:
    served queries/s fell from 18.7 at one client to 7.7 at four; docs/results/search_service.md)."""
    import faiss

    from fbinfer.threads import cpu_count, torch_threads

    torch_threads(instances)
    faiss.omp_set_num_threads(max(1, cpu_count() // instances))


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        import triton_python_backend_utils as pb

        params = model_params(args)
        self.kind, self.pb = params["kind"], pb
        self.max_candidates = int(params["max_candidates"])
        self.matcher = TritonMatcher(pb, params["bundle"], int(params["batch_size"]))
        if params.get("index"):
            share_cores(int(params["ranking_instances"]))
            self.live = LiveIndex(params["index"])
        else:
            self.live = None
        self.depth = int(params["depth"])

    def execute(self, requests: list) -> list:
        handle = self._rerank if self.kind == "rerank" else self._search
        out = []
        for r in requests:
            try:
                out.append(self.pb.InferenceResponse(handle(r)))
            except (RequestError, FbinferError) as e:
                out.append(_error(self.pb, e))
        return out

    def _int(self, request, name: str, default: int, low: int) -> int:
        """An optional INT32 input, between ``low`` and the most candidates a request may rank."""
        value = _optional(self.pb, request, name)
        value = int(value.ravel()[0]) if value is not None else default
        if not low <= value <= self.max_candidates:
            raise RequestError(f"{name} {value}: must be between {low} and {self.max_candidates}")
        return value

    # ---- rerank ----------------------------------------------------------------------------------
    def _rerank(self, r) -> list:
        pb = self.pb
        text = _optional(pb, r, "QUERY_TEXT")
        if text is not None:
            query = _strings(text, "QUERY_TEXT")[0]
            patches = self._patches(r, ("CANDIDATE_IMAGES", "CANDIDATE_PATCHES", "CANDIDATE_IDS"))
            scores = self.matcher.score([query] * len(patches), patches)
        else:
            feats = self._patches(r, ("QUERY_IMAGE", "QUERY_PATCHES", "QUERY_ID"))
            if len(feats) != 1:
                raise RequestError(f"{len(feats)} query images; give one")
            captions = self._candidate_texts(r)
            scores = self.matcher.score(captions, np.repeat(feats, len(captions), axis=0))
        top = np.argsort(-scores, kind="stable")[:self._int(r, "K", len(scores), 1)]
        return [pb.Tensor("INDICES", top.astype(np.int64)), pb.Tensor("SCORES", scores[top].astype(np.float32))]

    def _one_of(self, r, names: tuple[str, ...]) -> tuple[str, np.ndarray]:
        given = [(n, a) for n in names if (a := _optional(self.pb, r, n)) is not None]
        if len(given) != 1:
            raise RequestError(f"give exactly one of {', '.join(names)}" + (f" (got {', '.join(n for n, _ in given)})" if given else ""))
        name, array = given[0]
        if name.startswith("CANDIDATE") and not 1 <= len(array) <= self.max_candidates:
            raise RequestError(f"{name}: {len(array)} candidates; give 1 to {self.max_candidates}")
        return given[0]

    def _rows(self, name: str, ids: np.ndarray):
        if self.live is None:
            raise RequestError(f"{name}: item ids need a catalogue index (fbinfer serve --index)")
        index = self.live.current()
        rows = ids.astype(np.int64).ravel()
        bad = rows[(rows < 0) | (rows >= len(index))]
        if len(bad):
            raise RequestError(f"{name}: unknown item id {int(bad[0])} (the index has ids 0 to {len(index) - 1})")
        return index, rows

    def _patches(self, r, names: tuple[str, str, str]) -> np.ndarray:
        """(N, P, D) features of the one input given among (encoded images, patch features, item ids)."""
        name, a = self._one_of(r, names)
        if name == names[2]:
            index, rows = self._rows(name, a)
            return index.item_patches(rows)
        if name == names[1]:
            return patch_array(name, a, (self.matcher.config.num_patches, self.matcher.config.patch_feature_dim))
        return self.matcher.patch_features(image_blobs(name, a))

    def _candidate_texts(self, r) -> list[str]:
        name, a = self._one_of(r, ("CANDIDATE_TEXTS", "CANDIDATE_IDS"))
        if name == "CANDIDATE_IDS":
            index, rows = self._rows(name, a)
            return [index.items[int(i)]["text"] for i in rows]
        return _strings(a, name)

    # ---- search ----------------------------------------------------------------------------------
    def _search(self, r) -> list:
        pb = self.pb
        text = _optional(pb, r, "TEXT")
        text = _strings(text, "TEXT")[0] if text is not None else None
        image = _optional(pb, r, "IMAGE")
        image = image_blobs("IMAGE", image[:1])[0] if image is not None else None
        k = self._int(r, "K", 10, 1)
        depth = self._int(r, "DEPTH", self.depth, 0)  # 0: no rerank
        index = self.live.current()
        rerank = self.matcher if depth and text is not None else None  # FashionBERT scores a caption against images
        hits = index.search(text=text, image=image, k=k, rerank=rerank, depth=max(depth, k))
        return [pb.Tensor("ROWS", np.array([h.row for h in hits], np.int64)),
                pb.Tensor("SCORES", np.array([h.score for h in hits], np.float32)),
                pb.Tensor("RERANK", np.array([np.nan if h.rerank is None else h.rerank for h in hits], np.float32)),
                pb.Tensor("ITEMS", np.array([json.dumps(h.item).encode() for h in hits], dtype=object)),
                pb.Tensor("COUNT", np.array([len(index)], np.int64))]

