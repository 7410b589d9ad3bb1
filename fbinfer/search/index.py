"""A catalogue index: three faiss indexes (image, text, image+text vectors) over one list of items,
their patch features for the reranker, and the embedding model's identity.

Folder layout (written under a temporary name and renamed, so it is whole or absent)::

    catalog.index/
      index.json        format, model sha256 and path, kind, dimensions, counts, feature key, vocab sha256,
                        and every other file's size and sha256 (patches.npy's shape too), checked
                        before faiss or numpy reads it (``fbinfer.verify``)
      items.jsonl       one item per row: image, text, product_id, category, subcategory, patch_row
      image.faiss text.faiss product.faiss
      patches.npy       (rows, 64, 320) fp16 patch features: what the cross-encoder reranks with

Loading memory-maps the vectors and the patch features (faiss ``IO_FLAG_MMAP_IFC``, numpy mmap).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fbinfer import verify
from fbinfer.data.records import Item
from fbinfer.data.source import DataSource
from fbinfer.errors import FbinferError, first_line
from fbinfer.fileio import atomic_path, read_json, write_json
from fbinfer.output_paths import check_folder_output
from fbinfer.search.embedder import TARGETS, Embedder, embed_items, open_embedder

FORMAT = "fbinfer.index"
VERSION = 2  # 2: index.json records each file's size and sha256
KINDS = ("auto", "flat", "hnsw", "ivfpq")
SPLITS = ("all", "train", "test")
K, DEPTH = 10, 64  # a search's defaults: results returned, candidates a reranker scores
# auto: exact search up to this many items, HNSW above (the measurement: docs/results/search.md)
EXACT_UP_TO = 100_000
HNSW_M, HNSW_EF_SEARCH, HNSW_EF_CONSTRUCTION = 32, 128, 80
TRAIN_PER_LIST = 64  # IVF-PQ trains its lists and codebooks on at most this many vectors per list
FILES = ("items.jsonl", "patches.npy", *(f"{t}.faiss" for t in TARGETS))


def faiss_module():
    try:
        import faiss
    except ImportError:
        raise FbinferError("catalogue search needs faiss: pip install -e '.[search]'") from None
    return faiss


def resolve_kind(kind: str, n: int) -> str:
    """``auto``: exact search up to EXACT_UP_TO items, HNSW above."""
    if kind not in KINDS:
        raise FbinferError(f"--kind {kind!r}: choose from {', '.join(KINDS)}")
    return kind if kind != "auto" else ("flat" if n <= EXACT_UP_TO else "hnsw")


def make_faiss(kind: str, dim: int, n: int):
    """An empty index of ``kind`` for ``n`` unit vectors (inner product = cosine)."""
    faiss = faiss_module()
    kind = resolve_kind(kind, n)
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
        return index
    if kind == "ivfpq":
        nlist = max(1, int(4 * np.sqrt(n)))
        index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, dim // 8, 8, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = min(nlist, 32)
        return index
    raise AssertionError(kind)


def fill_faiss(index, vectors: np.ndarray) -> None:
    if not index.is_trained:
        if len(vectors) < index.nlist * 39 // 10:
            raise FbinferError(f"--kind ivfpq: {len(vectors)} items are too few to train {index.nlist} lists; use flat or hnsw")
        sample = np.random.default_rng(0).permutation(len(vectors))[:TRAIN_PER_LIST * index.nlist]  # k-means on a sample: on all of a large catalogue it is too slow (docs/results/search.md)
        index.train(np.ascontiguousarray(vectors[np.sort(sample)], dtype=np.float32))
    for b in range(0, len(vectors), 65536):
        index.add(np.ascontiguousarray(vectors[b:b + 65536], dtype=np.float32))


def vocab_sha256(vocab: list[str]) -> str:
    return hashlib.sha256("\n".join(vocab).encode()).hexdigest()


def item_record(data: DataSource, it: Item, row: int) -> dict:
    image = it.image if data.is_h5 else str((data.path / it.image).resolve())
    return {"image": image, "text": it.text, "product_id": it.product_id, "category": it.category, "subcategory": it.subcategory,
            "patch_row": row}


def split_items(data: DataSource, split: str) -> list[Item]:
    if split not in SPLITS:
        raise FbinferError(f"--split {split!r}: choose all, train or test")
    return {"all": data.train + data.test, "train": data.train, "test": data.test}[split]


def file_records(folder: Path, patch_shape: tuple[int, ...]) -> dict[str, dict]:
    """Size and sha256 of every file of an index folder but index.json, which holds them."""
    return {name: verify.record(folder / name, **({"shape": list(patch_shape)} if name == "patches.npy" else {})) for name in FILES}


def write_index(out: Path, meta: dict, items: list[dict], vectors: dict[str, np.ndarray], patches: np.ndarray, kind: str) -> dict:
    """Write a new index folder atomically from the items, their vectors and their patch features."""
    faiss = faiss_module()
    kind = resolve_kind(kind, len(items))
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        np.save(tmp / "patches.npy", np.asarray(patches, dtype=np.float16))
        with (tmp / "items.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(it) + "\n" for it in items)
        built = {}
        for target in TARGETS:
            index = make_faiss(kind, vectors[target].shape[1], len(items))
            fill_faiss(index, vectors[target])
            faiss.write_index(index, str(tmp / f"{target}.faiss"))
            built[target] = type(index).__name__
        meta = {**meta, "format": FORMAT, "version": VERSION, "kind": kind, "faiss": built, "count": len(items),
                "files": file_records(tmp, np.shape(patches))}
        write_json(tmp / "index.json", meta)
    return meta


def build_index(model: Path, data: DataSource, out: Path, kind: str = KINDS[0], split: str = SPLITS[0], use_ray: bool = False,
                force: bool = False, backend: str | None = None) -> dict:
    """Embed every item of ``split`` and write the index ``out``; returns its index.json."""
    resolve_kind(kind, 0)
    check_folder_output(out, "-o", force, "index.json", inputs=[model, data.path])
    from fbinfer.data.features import FeatureStore  # torch: only where features are extracted

    emb = open_embedder(model, backend)
    items = split_items(data, split)
    store = FeatureStore(data, emb.config.feature_config()).ensure(items)
    patches = store.get(items).numpy()
    texts = [it.text for it in items]
    if use_ray:
        from fbinfer.search.ray_embed import ray_embed

        vectors = ray_embed(model, texts, patches, backend)
    else:
        vectors = embed_items(emb, texts, patches)
    meta = {"model": str(Path(model).resolve()), "model_sha256": emb.identity, "dim": emb.config.dim, "feature_key": emb.config.feature_key,
            "vocab_sha256": vocab_sha256(emb.vocab), "data": str(data.path), "split": split}
    return write_index(out, meta, [item_record(data, it, i) for i, it in enumerate(items)], vectors, patches, kind)


def add_to_index(folder: Path, data: DataSource, split: str = SPLITS[0]) -> dict:
    """Embed ``split`` of ``data`` with the index's own model and append it; the folder is replaced whole."""
    from fbinfer.data.features import FeatureStore

    faiss = faiss_module()
    meta = read_meta(folder)
    emb = open_embedder(meta["model"])
    check_identity(meta, emb, folder)
    items = split_items(data, split)
    store = FeatureStore(data, emb.config.feature_config()).ensure(items)
    patches = store.get(items).numpy()
    vectors = embed_items(emb, [it.text for it in items], patches)
    old_items = read_items(folder)
    with atomic_path(folder) as tmp:
        tmp.mkdir(parents=True)
        old = np.load(folder / "patches.npy", mmap_mode="r")
        rows = len(old)  # items may share patch rows (a grown catalogue does): new rows go after the last
        merged = np.lib.format.open_memmap(tmp / "patches.npy", mode="w+", dtype=np.float16, shape=(rows + len(items), *old.shape[1:]))
        merged[:rows] = old
        merged[rows:] = patches.astype(np.float16)
        merged.flush()
        shape = merged.shape
        del merged, old
        new_items = old_items + [item_record(data, it, rows + i) for i, it in enumerate(items)]
        with (tmp / "items.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(it) + "\n" for it in new_items)
        for target in TARGETS:
            index = faiss.read_index(str(folder / f"{target}.faiss"))
            fill_faiss(index, vectors[target])
            faiss.write_index(index, str(tmp / f"{target}.faiss"))
        meta = {**meta, "count": len(new_items), "added": [*meta.get("added", []), {"data": str(data.path), "split": split,
                                                                                   "items": len(items)}],
                "files": file_records(tmp, shape)}
        write_json(tmp / "index.json", meta)
    return meta


def read_meta(folder: Path) -> dict:
    folder = Path(folder)
    if not folder.is_dir():
        raise FbinferError(f"{folder}: no such index (build one with fbinfer index build)")
    if not (folder / "index.json").is_file():
        raise FbinferError(f"{folder}: not an fbinfer index (no index.json)")
    meta = read_json(folder / "index.json")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise FbinferError(f"{folder}/index.json: not an fbinfer index")
    if meta.get("version") != VERSION:
        raise FbinferError(f"{folder}/index.json: version {meta.get('version')}, this fbinfer reads version {VERSION} "
                           "(indexes before 2 carry no file hashes); rebuild it with fbinfer index build")
    for key in ("model", "model_sha256", "dim", "count", "feature_key", "vocab_sha256", "files"):
        if key not in meta:
            raise FbinferError(f"{folder}/index.json: missing field '{key}'")
    files = meta["files"]
    if not isinstance(files, dict) or set(files) != set(FILES) or not all(
            isinstance(r, dict) and isinstance(r.get("bytes"), int) and isinstance(r.get("sha256"), str) for r in files.values()):
        raise FbinferError(f"{folder}/index.json: field 'files' must record bytes and sha256 of {', '.join(FILES)}")
    for name in FILES:  # before faiss or numpy parses anything
        verify.check_file(folder / name, files[name], f"{folder}/index.json")
    return meta


def read_items(folder: Path) -> list[dict]:
    items = []
    with (folder / "items.jsonl").open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            try:
                items.append(json.loads(line))
            except json.JSONDecodeError:
                raise FbinferError(f"{folder}/items.jsonl:{n}: malformed JSON (a damaged index; rebuild it)") from None
    return items


def check_identity(meta: dict, emb: Embedder, folder: Path) -> None:
    """Vectors from one model are meaningless to another: refuse a mismatch (sha256 of embed.pt)."""
    if emb.identity != meta["model_sha256"]:
        raise FbinferError(f"{folder}: built with embedding model {meta['model_sha256'][:12]} ({meta['model']}), "
                           f"but {emb.name} is {emb.identity[:12]}; search it with the model that built it, or rebuild it")


@dataclass
class Hit:
    row: int
    score: float  # the dual encoder's cosine similarity
    item: dict
    rerank: float | None = None  # the cross-encoder's match logit, when reranked


class CatalogIndex:
    """A loaded index: ``search`` by text, image or both, optionally reranked by a FashionBERT Matcher.

    Example:
        >>> idx = fbinfer.load_index("catalog.index")
        >>> hits = idx.search(text="black leather ankle boots", k=10, rerank=fbinfer.load("student.bundle"), depth=32)
        >>> [(h.item["image"], h.rerank) for h in hits]
    """

    def __init__(self, folder: Path, embedder: Embedder | None = None, backend: str | None = None):
        faiss = faiss_module()
        self.folder = Path(folder)
        self.meta = read_meta(self.folder)
        self.embedder = embedder or open_embedder(self.meta["model"], backend)
        check_identity(self.meta, self.embedder, self.folder)
        self.items = read_items(self.folder)
        try:
            self.indexes = {t: faiss.read_index(str(self.folder / f"{t}.faiss"), faiss.IO_FLAG_MMAP_IFC) for t in TARGETS}
            self.patches = np.load(self.folder / "patches.npy", mmap_mode="r")
        except (RuntimeError, ValueError, OSError) as e:
            raise FbinferError(f"{self.folder}: damaged index ({first_line(e)}); rebuild it") from None
        counts = {t: ix.ntotal for t, ix in self.indexes.items()}
        if set(counts.values()) != {len(self.items)} or len(self.items) != self.meta["count"]:
            raise FbinferError(f"{self.folder}: its files disagree on the item count ({counts}, {len(self.items)} items); rebuild it")
        rows = [it.get("patch_row") for it in self.items]
        if not all(isinstance(r, int) and 0 <= r < len(self.patches) for r in rows):
            raise FbinferError(f"{self.folder}: items.jsonl names patch rows outside patches.npy's {len(self.patches)}; rebuild it")
        self._featurize: Callable | None = None
        self._checked: set[int] = set()  # rerankers already checked against the index

    def __len__(self) -> int:
        return len(self.items)

    def item_patches(self, rows) -> np.ndarray:
        """(len(rows), P, D) float32 patch features of catalogue rows (what the reranker scores)."""
        return self.patches[[self.items[int(r)]["patch_row"] for r in rows]].astype(np.float32)

    def search_vectors(self, target: str, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, k) cosine scores and rows of the nearest items' ``target`` vectors."""
        scores, rows = self.indexes[target].search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(self)))
        return scores, rows

    def patch_features(self, image, matcher=None) -> np.ndarray:
        """(1, P, D) features of a query image: the reranker's extractor if given, else the model's own."""
        if matcher is not None:
            return matcher.patch_features([image])
        if self._featurize is None:
            from fbinfer.runtime.images import PatchFeaturizer, torch_extractor

            fc = self.embedder.config.feature_config()
            self._featurize = PatchFeaturizer(fc, torch_extractor(fc))
        return self._featurize([image])

    def search(self, text: str | None = None, image=None, k: int = K, target: str | None = None, rerank=None,
               depth: int = DEPTH) -> list[Hit]:
        """The top ``k`` items for a caption, an image, or both (image+text, the product vector).

        Args:
            text: a caption query.
            image: an image query (path, bytes, PIL image, HxWx3 array or (P, D) patch features).
            k: how many results.
            target: which vectors to search: "image" (default for a caption or an image), "text"
                (captions: image-to-text), or "product" (image+text; default for both).
            rerank: a FashionBERT Matcher (``fbinfer.load``): rescores the top ``depth`` by caption-image match.
            depth: candidates the reranker scores; at least ``k``.

        Returns:
            Hits, best first (by the reranker's logit when reranked).
        """
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise FbinferError("search: the text query is empty")
        if text is None and image is None:
            raise FbinferError("search: give a text query, an image query, or both")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise FbinferError(f"search: k must be a positive integer, not {k!r}")
        target = target or ("product" if text is not None and image is not None else "image")
        if target not in TARGETS:
            raise FbinferError(f"search: target {target!r}: choose from {', '.join(TARGETS)}")
        if rerank is not None:
            if id(rerank) not in self._checked:  # hashing the vocabulary costs more than a small query
                check_reranker(rerank.tokenizer.vocab, rerank.config.feature_key, self.meta, self.folder)
                self._checked.add(id(rerank))
            if depth < k:
                raise FbinferError(f"--depth {depth} is smaller than --k {k}: the reranker must see at least k candidates")
            pair = "caption-image" if (text is not None and target != "text") or (image is not None and target == "text") else None
            if pair is None:
                raise FbinferError("--rerank: FashionBERT scores a caption against an image; an image query against "
                                   "image vectors has no caption to score (search --target text, or add a text query)")
        qfeat = None if image is None else np.asarray(image if _is_features(image, self.patches) else self.patch_features(image, rerank),
                                                      dtype=np.float32).reshape(1, *self.patches.shape[1:])
        t = self.embedder.texts([text]) if text is not None else None
        v = self.embedder.images(qfeat) if qfeat is not None else None
        q = self.embedder.products(t, v) if t is not None and v is not None else (t if t is not None else v)
        scores, rows = self.search_vectors(target, q, depth if rerank is not None else k)
        hits = [Hit(int(r), float(s), self.items[r]) for s, r in zip(scores[0], rows[0]) if r >= 0]
        if rerank is None:
            return hits[:k]
        logits = rerank_scores(rerank, [h.row for h in hits], self, text if target != "text" else None, qfeat)
        for h, s in zip(hits, logits):
            h.rerank = float(s)
        return sorted(hits, key=lambda h: -h.rerank)[:k]


def rerank_scores(matcher, rows: list[int], index: CatalogIndex, text: str | None, query_features: np.ndarray | None) -> np.ndarray:
    """The cross-encoder's logits: the query caption against each candidate's image, or each
    candidate's caption against the query image."""
    if text is not None:
        return matcher.score([text] * len(rows), index.item_patches(rows))
    return matcher.score([index.items[int(r)]["text"] for r in rows], np.repeat(query_features, len(rows), axis=0))


def check_reranker(vocab: list[str], feature_key: str, meta: dict, folder: Path) -> None:
    """The reranker must read the captions and images as the index's model does."""
    if vocab_sha256(vocab) != meta["vocab_sha256"]:
        raise FbinferError(f"--rerank: its vocabulary differs from the one {folder} was built with")
    if feature_key != meta["feature_key"]:
        raise FbinferError(f"--rerank: it reads {feature_key} features, {folder} holds {meta['feature_key']}")


def _is_features(x, patches: np.ndarray) -> bool:
    return isinstance(x, np.ndarray) and x.ndim in (2, 3) and x.shape[-2:] == patches.shape[1:]

