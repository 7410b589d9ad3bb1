"""``fbinfer embed export``: the dual encoder's towers as ONNX graphs (FP32) in a bundle (the one
format ``fbinfer.bundle`` reads, ``model: embed``), with their parity against PyTorch on the data's
own captions and images, per backend.

A bundle whose text or image vectors differ from PyTorch's by more than the FP32 tolerance every
export holds its graphs to (``ExportConfig.fp32_tolerance``) is not written: an index built with
one and searched with the other would silently rank differently.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fbinfer.backends.registry import backend as get_backend
from fbinfer.bundle import Bundle
from fbinfer.bundle.folder import MANIFEST, VOCAB
from fbinfer.data.features import FeatureStore
from fbinfer.data.source import DataSource
from fbinfer.errors import ParityError
from fbinfer.export.config import ExportConfig
from fbinfer.export.graphs import dynamo_export
from fbinfer.fileio import atomic_path
from fbinfer.output_paths import check_folder_output
from fbinfer.search.checkpoint import load_embed
from fbinfer.search.embedder import GRAPHS, bundle_embedder, torch_embedder

TOLERANCE = ExportConfig.fp32_tolerance  # max |vector difference| (unit vectors) for an FP32 graph
BACKENDS = ("onnxruntime", "openvino")


def export_embed(model: Path, data: DataSource, out: Path, samples: int = 64, force: bool = False) -> dict:
    """Write the embedding bundle ``out``; returns its manifest."""
    check_folder_output(out, "-o", force, MANIFEST, inputs=[model])
    ck = load_embed(model)
    m, cfg = ck.model, ck.config
    items = data.test[:samples]
    store = FeatureStore(data, cfg.feature_config()).ensure(items)
    reference = torch_embedder(model)
    texts, patches = [it.text for it in items], store.get(items).numpy()
    want = {"text": reference.texts(texts), "image": reference.images(patches)}
    want["product"] = reference.products(want["text"], want["image"])
    tok = reference.tokenizer(texts[:3])
    b, t = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("text", min=2, max=cfg.max_text_len)
    example = {"text": (torch.from_numpy(tok.input_ids), torch.from_numpy(tok.attention_mask)),
               "image": (torch.from_numpy(patches[:3]),),
               "product": (torch.from_numpy(want["text"][:3]), torch.from_numpy(want["image"][:3]))}
    axes = {"text": ({0: b, 1: t}, {0: b, 1: t}), "image": ({0: b},), "product": ({0: b}, {0: b})}
    modules = {"text": m.text, "image": m.image, "product": m.product}
    header = {"model": "embed", "source": {"checkpoint": str(Path(model).resolve()), "sha256": ck.sha256, "meta": ck.meta},
              "config": cfg.to_dict(), "tokenizer": {"vocab": VOCAB, "lowercase": True, "max_length": cfg.max_text_len},
              "parity_data": {"data": str(data.path), "fingerprint": data.fingerprint(), "split": "test", "items": len(items)},
              "tolerance": TOLERANCE}
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        bundle = Bundle.create(tmp, header)
        for name, (inputs, output) in GRAPHS.items():
            dynamo_export(modules[name], example[name], bundle.tower_path(name), inputs, (output,), axes[name], 18)
            bundle.add_tower(name, inputs=list(inputs), output=output)
        (tmp / VOCAB).write_text("\n".join(ck.vocab) + "\n", encoding="utf-8")
        bundle.add_file(VOCAB)
        bundle.save()
        for backend in BACKENDS:
            why = get_backend(backend).unavailable()
            if why:
                bundle.manifest.setdefault("parity_skipped", {})[backend] = why
                continue
            _parity(bundle, backend, texts, patches, want, out)
        bundle.save()
    return bundle.manifest


def _parity(bundle: Bundle, backend: str, texts: list[str], patches: np.ndarray, want: dict[str, np.ndarray], out: Path) -> None:
    """One parity row per tower on ``backend``; a tower off by more than the tolerance fails the export."""
    got = bundle_embedder(bundle.folder, backend)
    vecs = {"text": got.texts(texts), "image": got.images(patches)}
    vecs["product"] = got.products(vecs["text"], vecs["image"])
    same_top = float(np.mean(np.argmax(vecs["text"] @ vecs["image"].T, 1) == np.argmax(want["text"] @ want["image"].T, 1)))
    for name in GRAPHS:
        diff = float(np.abs(vecs[name] - want[name]).max())
        bundle.add_parity(f"{name}.fp32", backend, "fp32", {"max_abs_diff": diff},
                          **({"text_to_image_top1_agreement": same_top} if name == "text" else {}))
        if diff > TOLERANCE:
            raise ParityError(f"{out}: the {name} graph on {backend} differs from PyTorch by {diff:.2e} (> {TOLERANCE:g}); not written")
