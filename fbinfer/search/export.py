"""``fbinfer embed export``: the dual encoder's towers as ONNX graphs (FP32) in an embedding bundle,
with their parity against PyTorch on the data's own captions and images, per backend.

A bundle whose text or image vectors differ from PyTorch's by more than ``TOLERANCE`` is not
written: an index built with one and searched with the other would silently rank differently.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fbinfer.backends.registry import backend as get_backend
from fbinfer.data.features import FeatureStore
from fbinfer.data.source import DataSource
from fbinfer.errors import FbinferError
from fbinfer.export.graphs import dynamo_export
from fbinfer.fileio import atomic_path, sha256, write_json
from fbinfer.output_paths import check_folder_output
from fbinfer.search.checkpoint import load_embed
from fbinfer.search.embedder import BUNDLE_FORMAT, GRAPHS, bundle_embedder, torch_embedder

TOLERANCE = 1e-4  # max |vector difference| (unit vectors) for an FP32 graph
BACKENDS = ("onnxruntime", "openvino")


def export_embed(model: Path, data: DataSource, out: Path, samples: int = 64, force: bool = False) -> dict:
    """Write the embedding bundle ``out``; returns its manifest."""
    check_folder_output(out, "-o", force, "manifest.json", inputs=[model])
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
    with atomic_path(out) as tmp:
        tmp.mkdir(parents=True)
        graphs = {}
        for name, (inputs, output) in GRAPHS.items():
            file = f"{name}.fp32.onnx"
            dynamo_export(modules[name], example[name], tmp / file, inputs, (output,), axes[name], 18)
            graphs[name] = {"file": file, "sha256": sha256(tmp / file), "inputs": list(inputs), "output": output}
        (tmp / "vocab.txt").write_text("\n".join(ck.vocab) + "\n", encoding="utf-8")
        manifest = {"format": BUNDLE_FORMAT, "version": 1, "model": str(model), "model_sha256": ck.sha256, "config": cfg.to_dict(),
                    "vocab": "vocab.txt", "graphs": graphs, "parity": {}, "tolerance": TOLERANCE, "parity_samples": len(items)}
        write_json(tmp / "manifest.json", manifest)
        for backend in BACKENDS:
            if get_backend(backend).unavailable():
                manifest["parity"][backend] = {"skipped": get_backend(backend).unavailable()}
                continue
            got = bundle_embedder(tmp, backend)
            vecs = {"text": got.texts(texts), "image": got.images(patches)}
            vecs["product"] = got.products(vecs["text"], vecs["image"])
            diff = {k: float(np.abs(vecs[k] - want[k]).max()) for k in want}
            same_top = float(np.mean(np.argmax(vecs["text"] @ vecs["image"].T, 1) == np.argmax(want["text"] @ want["image"].T, 1)))
            manifest["parity"][backend] = {"max_abs_diff": diff, "text_to_image_top1_agreement": same_top}
            worst = max(diff, key=diff.get)
            if diff[worst] > TOLERANCE:
                raise FbinferError(f"{out}: the {worst} graph on {backend} differs from PyTorch by {diff[worst]:.2e} "
                                   f"(> {TOLERANCE:g}); not written")
        write_json(tmp / "manifest.json", manifest)
    return manifest
