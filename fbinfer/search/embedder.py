"""Turning captions and patch features into catalogue vectors, from ``embed.pt`` (PyTorch) or from an
exported embedding bundle (ONNX graphs on ONNX Runtime or OpenVINO), behind one interface.

    emb = open_embedder("embed.pt")                     # or "embed.bundle", backend="openvino"
    emb.texts(["black leather ankle boots"])            # (1, dim) float32 unit vectors
    emb.images(patch_features)                          # (N, 64, 320) -> (N, dim)
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fbinfer.bundle.io_spec import ATTENTION_MASK, INPUT_IDS, PATCHES
from fbinfer.errors import FbinferError
from fbinfer.model.tokenizer import TextTokenizer
from fbinfer.search.config import EmbedConfig

TARGETS = ("image", "text", "product")  # the vector sets of a catalogue
GRAPHS = {"text": ((INPUT_IDS, ATTENTION_MASK), "text_embedding"), "image": ((PATCHES,), "image_embedding"),
          "product": (("text_embedding", "image_embedding"), "product_embedding")}


class Embedder:
    """Vectors for captions, images (patch features) and products (their text and image vectors).

    ``identity``: the sha256 of the model's ``embed.pt`` (an exported bundle records its source's),
    what an index records and checks.
    """

    def __init__(self, config: EmbedConfig, vocab: list[str], identity: str, towers: dict[str, Callable[..., np.ndarray]],
                 batch_size: int = 64, name: str = ""):
        self.config, self.vocab, self.identity, self.towers = config, vocab, identity, towers
        self.tokenizer = TextTokenizer(vocab, config.max_text_len)
        self.batch_size, self.name = batch_size, name

    def texts(self, texts: list[str]) -> np.ndarray:
        """(N, dim) unit vectors; captions sorted by length into batches (less padding)."""
        if any(not isinstance(t, str) or not t.strip() for t in texts):
            raise FbinferError("a text to embed is empty")
        out = np.empty((len(texts), self.config.dim), dtype=np.float32)
        order = np.argsort([len(t) for t in texts], kind="stable")
        for b in range(0, len(texts), self.batch_size):
            rows = order[b:b + self.batch_size]
            tok = self.tokenizer([texts[i] for i in rows])
            out[rows] = self.towers["text"](tok.input_ids, tok.attention_mask)
        return out

    def images(self, patches: np.ndarray) -> np.ndarray:
        """(N, P, D) patch features -> (N, dim) unit vectors."""
        return np.concatenate([self.towers["image"](np.asarray(patches[b:b + self.batch_size], dtype=np.float32))
                               for b in range(0, len(patches), self.batch_size)] or [np.zeros((0, self.config.dim), np.float32)])

    def products(self, text: np.ndarray, image: np.ndarray) -> np.ndarray:
        """A product's image+text vector from its caption's and image's vectors."""
        return self.towers["product"](text.astype(np.float32), image.astype(np.float32))


def embed_items(emb: Embedder, texts: list[str], patches: np.ndarray, batch: int = 256,
                desc: str = "embedding catalogue") -> dict[str, np.ndarray]:
    """Text, image and product vectors of the catalogue's items, in batches with progress."""
    out = {t: np.empty((len(texts), emb.config.dim), dtype=np.float32) for t in TARGETS}
    with tqdm(total=len(texts), desc=desc, unit="item", disable=len(texts) < 512) as bar:
        for b in range(0, len(texts), batch):
            sl = slice(b, b + batch)
            out["text"][sl] = emb.texts(texts[sl])
            out["image"][sl] = emb.images(patches[sl])
            out["product"][sl] = emb.products(out["text"][sl], out["image"][sl])
            bar.update(len(texts[sl]))
    return out


def torch_embedder(path: Path, batch_size: int = 64) -> Embedder:
    import torch

    from fbinfer.search.checkpoint import load_embed

    ck = load_embed(path)
    m = ck.model

    def run(module):
        @torch.inference_mode()
        def call(*arrays: np.ndarray) -> np.ndarray:
            return module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays)).float().numpy()
        return call

    return Embedder(ck.config, ck.vocab, ck.sha256, {"text": run(m.text), "image": run(m.image), "product": run(m.product)},
                    batch_size, f"torch:{path.name}")


def tower(path: Path, inputs: tuple[str, ...], output: str, backend: str) -> Callable[..., np.ndarray]:
    """One tower's ONNX graph on ``backend`` in FP32 (any backend that runs ONNX files)."""
    from fbinfer.backends.registry import graph_runner

    runner = graph_runner(backend, path, (output,)).activate()
    return lambda *arrays: runner.infer(dict(zip(inputs, arrays)))[output]


def bundle_embedder(folder: Path, backend: str = "onnxruntime", batch_size: int = 64) -> Embedder:
    """An embedding bundle's towers on ``backend``; its identity is its source ``embed.pt``'s sha256."""
    from fbinfer.bundle import Bundle

    b = Bundle.open(folder, model="embed")
    cfg = EmbedConfig.from_dict(b.manifest["config"], f"{folder}/manifest.json: config")
    vocab = b.vocab()
    if len(vocab) != cfg.text_config().vocab_size:
        raise FbinferError(f"{folder}: its vocab has {len(vocab)} tokens, the text tower {cfg.text_config().vocab_size}")
    towers = {name: tower(b.file(b.manifest["graphs"][name]["file"]), inputs, output, backend) for name, (inputs, output) in GRAPHS.items()}
    return Embedder(cfg, vocab, b.manifest["source"]["sha256"], towers, batch_size, f"{backend}:{folder.name}")


def open_embedder(path: str | Path, backend: str | None = None, batch_size: int = 64) -> Embedder:
    """``embed.pt`` (PyTorch) or an embedding bundle folder (``backend``: onnxruntime, the default, or openvino)."""
    p = Path(path)
    if p.is_dir():
        return bundle_embedder(p, backend or "onnxruntime", batch_size)
    if p.is_file():
        if backend not in (None, "torch"):
            raise FbinferError(f"{p}: a checkpoint runs on torch; export it (fbinfer embed export {p}) for {backend}")
        return torch_embedder(p, batch_size)
    raise FbinferError(f"{p}: no such embedding model (embed.pt) or embedding bundle")
