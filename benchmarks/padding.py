"""What the padding of a mixed batch costs, and two ways of not computing it: the bench's timing
batch (64 real pairs over the caption lengths, padded to the longest) run (a) whole, (b) cut by
caption length into k sub-batches each padded to its own longest (k = 2, 4, 8: the runner option
``length_groups``, built after this measured it), and (c), not built, through a graph whose
Linear layers see the real tokens only (NonZero, Gather, ScatterND around each attention:
"remove padding"), all from the [CLS]-only export graph, on OpenVINO bf16 and ONNX Runtime fp32,
in shuffled turns with 50 ms pauses.

    python benchmarks/padding.py /work/exp/demo/teacher.pt --json benchmarks/results/padding_teacher.json

Why: on 7 December the teacher stayed at 1.23-1.25x OpenVINO's defaults (goal 1.3x), and a
third of the batch's tokens are padding (docs/results/cls_only.md).
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from timing_batch import model_and_batch, pairs_per_s, provenance

from fbinfer.backends.length_groups import length_groups
from fbinfer.backends.registry import open_runner
from fbinfer.bundle.io_spec import ATTENTION_MASK, LOGIT
from fbinfer.evaluation.timing import times_in_turns
from fbinfer.export.fused_model import MASK_VALUE, ExportGraph
from fbinfer.export.graphs import OPSET, as_torch, trace
from fbinfer.fileio import write_json

RUNS = (("openvino", "bf16"), ("onnxruntime", "fp32"))


class Unpadded(ExportGraph):
    """``ExportGraph`` with the Linear layers, norms and feed-forward on the real tokens only
    (N, H); each attention pads keys, values and queries back to (B, T, H) and the result is
    gathered again. The last layer runs on [CLS] alone, as in the export."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        t = input_ids.shape[1]
        text = self.text_norm(self.word(input_ids) + self.text_const[:t])
        image = self.patch_norm((self.average @ patches) @ self.patch_weight + self.patch_const)
        x = torch.cat([text, image], dim=1)
        b, n, h = x.shape
        keep = torch.cat([attention_mask.to(x.dtype), x.new_ones(b, self.image_tokens)], dim=1)
        mask = ((1.0 - keep) * MASK_VALUE)[:, None, None, :]
        index = torch.nonzero(keep.reshape(-1) > 0).squeeze(1)  # (N,) flat positions of the real tokens

        def pad(y: torch.Tensor) -> torch.Tensor:  # (N, C) -> (B, T, C), zeros at the padding
            return torch.zeros(b * n, y.shape[1], dtype=y.dtype).index_copy(0, index, y).reshape(b, n, -1)

        def attend(layer, q: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:  # (B, rows, H) context
            k, v = layer.split(pad(layer.k(xs))), layer.split(pad(layer.v(xs)))
            q = layer.split(q) * (1.0 / math.sqrt(h // layer.heads))
            return (torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1) @ v).transpose(1, 2).reshape(b, q.shape[2], h)

        xs = x.reshape(b * n, h).index_select(0, index)
        for layer in self.layers[:-1]:
            ctx = attend(layer, pad(layer.q(xs)), xs).reshape(b * n, h).index_select(0, index)
            xs = layer.attn_norm(layer.attn_out(ctx) + xs)
            xs = layer.ffn_norm(layer.ffn_out(F.gelu(layer.ffn_in(xs))) + xs)
        last, xq = self.layers[-1], pad(xs)[:, :1]  # the last layer on [CLS] alone
        y = last.attn_norm(last.attn_out(attend(last, last.q(xq), xs)) + xq)
        y = last.ffn_norm(last.ffn_out(F.gelu(last.ffn_in(y))) + y)
        return self.tia(torch.tanh(self.pooler(y[:, 0]))).squeeze(-1)


def main() -> None:
    args, mb, feeds = model_and_batch(__doc__, rounds=20)
    text = feeds[ATTENTION_MASK]
    with torch.inference_mode():
        reference = mb.ck.model.eval()(*as_torch(feeds)).logit.numpy()
    calls, text_tokens = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        graphs = {"padded": Path(tmp) / "padded.onnx", "unpadded graph": Path(tmp) / "unpadded.onnx"}
        trace(ExportGraph(mb.ck.model), mb.ck.config, graphs["padded"], OPSET["matmul"], mb.bundle.max_batch)
        trace(Unpadded(mb.ck.model), mb.ck.config, graphs["unpadded graph"], OPSET["matmul"], mb.bundle.max_batch)
        for backend, precision in RUNS:
            for way, k in (("whole batch", 1), *((f"{k} sub-batches by length", k) for k in (2, 4, 8))):
                key = f"{backend} {precision}, {way}"
                runner = open_runner(backend, mb.bundle, precision, graph=graphs["padded"], length_groups=k).activate()
                calls[key] = lambda r=runner: r.infer(feeds)[LOGIT]
                text_tokens[key] = sum(len(rows) * width for rows, width in length_groups(text, k))
            unpadded = open_runner(backend, mb.bundle, precision, graph=graphs["unpadded graph"]).activate()
            calls[f"{backend} {precision}, unpadded graph"] = lambda r=unpadded: r.infer(feeds)[LOGIT]
            text_tokens[f"{backend} {precision}, unpadded graph"] = int(text.sum())
        parity = {key: float(np.abs(call() - reference).max()) for key, call in calls.items()}
        times = times_in_turns(list(calls.values()), args.rounds, "padding, in turns", pause_s=0.05)
    speed = pairs_per_s(calls, times, args.batch)
    speedup = {k: round(v / speed[f"{k.split(', ')[0]}, whole batch"], 3) for k, v in speed.items()}
    result = {**provenance(args, mb),
              "text_tokens_padded": int(text.size), "text_tokens_real": int(text.sum()), "image_tokens_per_pair": mb.ck.config.image_tokens,
              "text_tokens_computed": text_tokens, "max_abs_logit_diff_vs_torch": parity, "pairs_per_s_median": speed,
              "speedup_over_whole_batch": speedup}
    for k in calls:
        print(f"{k:48s} {speed[k]:8.1f} pairs/s  {speedup[k]:.2f}x  text tokens {text_tokens[k]:5d}  max|dlogit| {parity[k]:.1e}")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
