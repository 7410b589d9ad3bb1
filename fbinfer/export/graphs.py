"""Writing and transforming the ONNX graphs: the traced FP32 graph, the ONNX Runtime fusion, the
FP16 conversion with FP32 islands, and the checks that each kind of graph must pass."""
from __future__ import annotations

import collections
import heapq
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from fbinfer.bundle.io_spec import BATCH, INPUT_NAMES, OUTPUT_NAMES, TEXT, example_feeds
from fbinfer.errors import FbinferError, first_line
from fbinfer.export.fused_model import ExportGraph
from fbinfer.model.config import FashionBertConfig
from fbinfer.model.fashionbert import FashionBert

OPSET = {"matmul": 19, "onnx-attention": 23}  # 19: FP16 Q/DQ scales (INT8 graph); 23: the Attention op


def export_fp32(model: FashionBert, path: Path, attention: str, max_batch: int) -> onnx.ModelProto:
    """The served FP32 graph: ``ExportGraph`` (fused patch embedding, chosen attention form)."""
    return trace(ExportGraph(model, attention), model.config, path, OPSET[attention], max_batch)


def export_plain(model: FashionBert, path: Path, max_batch: int) -> onnx.ModelProto:
    """The naive export a user would otherwise make: ``FashionBert.forward`` traced as it is
    (the bench's peer for the fused graphs)."""
    return trace(_LogitOnly(model), model.config, path, OPSET["matmul"], max_batch)


class _LogitOnly(torch.nn.Module):
    def __init__(self, model: FashionBert):
        super().__init__()
        self.model = model.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, attention_mask, patches).logit


def as_torch(feeds: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
    """Feeds in the graph's input order, as torch tensors (for the exporter and the reference)."""
    return tuple(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in INPUT_NAMES)


def trace(module: torch.nn.Module, cfg: FashionBertConfig, path: Path, opset: int, max_batch: int) -> onnx.ModelProto:
    """torch.onnx's dynamo exporter with batch 1..max_batch and text length 2..max_text_len dynamic
    (one graph serves every caption length: no padding to 64)."""
    max_text_len = cfg.max_text_len
    batch = torch.export.Dim(BATCH, min=1, max=max_batch)
    text = torch.export.Dim(TEXT, min=2, max=max_text_len)
    feeds = example_feeds(cfg, batch=min(3, max_batch) if max_batch > 1 else 1, text_len=min(12, max_text_len))
    return dynamo_export(module, as_torch(feeds), path, INPUT_NAMES, OUTPUT_NAMES,
                         ({0: batch, 1: text}, {0: batch, 1: text}, {0: batch}), opset)


def dynamo_export(module: torch.nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: tuple[str, ...],
                  outputs: tuple[str, ...], dynamic_shapes: tuple, opset: int) -> onnx.ModelProto:
    """torch.onnx's dynamo exporter, quietly, saved at ``path`` (the matcher's and the extractor's graphs)."""
    with warnings.catch_warnings(), quiet("torch.onnx", "onnxscript", "torch.export", "torch._dynamo"):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, args, input_names=list(inputs), output_names=list(outputs), dynamic_shapes=dynamic_shapes,
                                    opset_version=opset, dynamo=True, optimize=True, verbose=False)
    program.save(str(path))
    return onnx.load(str(path))


def fuse_for_onnxruntime(src: Path, dst: Path) -> dict[str, int]:
    """onnxscript's ORT fusions (MultiHeadAttention, SkipLayerNormalization, BiasGelu) on the
    dynamo graph; onnxruntime's own transformer optimizer finds no attention pattern in it."""
    import onnx_ir as ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    model = ir.load(str(src))
    with quiet("onnxscript"):
        model, _ = optimize_for_ort(model)
    ir.save(model, str(dst))
    counts = op_counts(onnx.load(str(dst)))
    if not counts.get("MultiHeadAttention") and not counts.get("Attention"):
        raise FbinferError(f"{dst.name}: ONNX Runtime fusion found no attention to fuse (ops: {dict(counts)})")
    return {op: n for op, n in counts.items() if op in FUSED_OPS}


FUSED_OPS = ("Attention", "MultiHeadAttention", "SkipLayerNormalization", "BiasGelu", "FastGelu", "Gelu",
             "EmbedLayerNormalization", "FusedMatMul")


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(collections.Counter(n.op_type for n in model.graph.node))


def nonstandard_ops(model: onnx.ModelProto) -> list[str]:
    """Nodes outside the standard ONNX domain: TensorRT's parser rejects them (com.microsoft ...)."""
    return sorted({f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")})


def to_fp16(model: onnx.ModelProto, fp32_ops: tuple[str, ...], fp32_head: bool) -> tuple[onnx.ModelProto, list[str]]:
    """FP16 weights and activations, except the blocked op types (and the pooler + TIA head when
    ``fp32_head``), which run in FP32 between Casts. Graph inputs and the logit stay FP32, so
    callers feed the same arrays to every precision. Returns the graph and its FP32 node names."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    head = head_nodes(model) if fp32_head else []
    islands = sorted({n.name for n in model.graph.node if n.op_type in fp32_ops} | set(head))
    with quiet("onnxruntime"):
        out = convert_float_to_float16(model, keep_io_types=True, op_block_list=list(fp32_ops), node_block_list=head)
    del out.graph.value_info[:]  # the converter leaves some intermediate types stale; they are optional, and re-inferred
    return toposort(out), islands


def toposort(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph's nodes in an order where each comes after the producers of its inputs, as the
    ONNX spec requires (the FP16 converter appends its Casts at the end; ONNX Runtime and TensorRT
    sort for themselves, other consumers need not). Stable: nodes already in order keep it."""
    nodes = list(model.graph.node)
    ready = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer} | {""}
    producer = {o: k for k, n in enumerate(nodes) for o in n.output}
    waiting = {k: {i for i in n.input if i not in ready and i in producer} for k, n in enumerate(nodes)}
    readers: dict[int, list[int]] = collections.defaultdict(list)
    for k, deps in waiting.items():
        for i in deps:
            readers[producer[i]].append(k)
    missing = {k: len(deps) for k, deps in waiting.items()}
    queue = [k for k, m in missing.items() if m == 0]
    heapq.heapify(queue)
    order = []
    while queue:
        k = heapq.heappop(queue)
        order.append(k)
        for r in readers[k]:
            missing[r] -= sum(1 for i in waiting[r] if producer[i] == k)
            if missing[r] == 0:
                heapq.heappush(queue, r)
    if len(order) != len(nodes):
        raise FbinferError(f"{model.graph.name}: graph has a cycle or an input no node produces")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.graph.node[:]
    out.graph.node.extend(nodes[k] for k in order)
    return out


def check_graph(path: Path) -> None:
    """The ONNX project's own validator with ``full_check`` (strict shape inference too): a bundle
    holds valid ONNX for every consumer, not only for the ones that forgive."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise FbinferError(f"export failed: {path.name} is not valid ONNX ({first_line(e, 200)})") from None


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """The nodes after the last LayerNormalization: [CLS] slice, pooler, tanh, TIA, squeeze."""
    nodes = list(model.graph.node)
    last = max(i for i, n in enumerate(nodes) if n.op_type in ("LayerNormalization", "SkipLayerNormalization"))
    return [n.name for n in nodes[last + 1:]]


ROOT = ""  # the root logger: ONNX Runtime's quantization tools log there


class quiet:
    """Silence chatty loggers of the exporter stack for one block."""

    def __init__(self, *names: str):
        self.loggers = [logging.getLogger(n) for n in names]

    def __enter__(self):
        self.levels = [lg.level for lg in self.loggers]
        for lg in self.loggers:
            lg.setLevel(logging.ERROR)

    def __exit__(self, *exc):
        for lg, level in zip(self.loggers, self.levels):
            lg.setLevel(level)
