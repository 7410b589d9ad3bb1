"""How fast could any FP32 backend run this model here? The matmul floor against torch eager.

Times, in turns in one run, on one batch of real test pairs (as ``fbinfer bench`` times them):
torch fp32 eager and the fused ONNX Runtime graph (the whole model), and every matmul of the
same forward pass alone, with nothing between them (no norm, softmax, GELU, bias, reshape or
allocation: operands and outputs are allocated once), in torch (oneDNN/MKL) and in ONNX Runtime
(MLAS). The matmuls alone are a floor under any FP32 implementation that uses these GEMM
libraries, so torch eager's time over the faster floor bounds what fusion can gain over torch
eager: the issue's goal of fused ONNX Runtime >= 1.5x torch eager is reachable only if that
bound is above 1.5. The softmax, GELU and LayerNorms alone (torch) are timed too: no fusion
removes them, so matmuls + those is a tighter floor.

Usage: python benchmarks/fp32_gemm_floor.py MODEL.pt --data DATA [--batch 64] [--rounds 20]
       [--out benchmarks/results/fp32_gemm_floor.json]
"""
from __future__ import annotations

import argparse
import platform
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from rich.table import Table

from fbinfer import terminal
from fbinfer.backends.onnxruntime import OnnxRuntimeRunner
from fbinfer.backends.pytorch import TorchRunner
from fbinfer.bench.flops import MatMul, flops_per_pair, matmuls
from fbinfer.bench.run import resolve, timing_feeds
from fbinfer.bundle.io_spec import INPUT_IDS
from fbinfer.data.features import FeatureStore
from fbinfer.evaluation.evaluate import eval_pairs
from fbinfer.evaluation.timing import median_ms_in_turns, peak_flops
from fbinfer.export.exporter import versions
from fbinfer.fileio import write_json
from fbinfer.model.config import FashionBertConfig
from fbinfer.threads import torch_threads

ELEMENTWISE = "torch softmax + GELU + LayerNorm alone"


class MatMulFloor:
    """Every matmul of a batch's forward pass, one after another, in torch or ONNX Runtime, on
    operands and outputs allocated once (weights per layer, activations shared across layers,
    which only helps the caches: the floor errs low)."""

    def __init__(self, mms: list[MatMul], batch: int, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.jobs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (a, b, out)
        for mm in mms:
            a = rng.standard_normal((batch * mm.per_pair, mm.m, mm.k), dtype=np.float32)
            shared = None if mm.weight else rng.standard_normal((batch * mm.per_pair, mm.k, mm.n), dtype=np.float32)
            for _ in range(mm.repeat):
                b = rng.standard_normal((mm.k, mm.n), dtype=np.float32) if mm.weight else shared
                self.jobs.append((a, b, np.empty((batch * mm.per_pair, mm.m, mm.n), np.float32)))
        self.torch_jobs = [tuple(torch.from_numpy(x) for x in job) for job in self.jobs]

    @property
    def macs(self) -> int:
        return sum(a.shape[0] * a.shape[1] * a.shape[2] * o.shape[2] for a, _, o in self.jobs)

    @torch.inference_mode()
    def run_torch(self) -> None:
        for a, b, out in self.torch_jobs:
            torch.matmul(a, b, out=out)

    def onnxruntime(self, threads: int) -> Callable[[], object]:
        """A session of one graph of MatMul nodes, inputs and outputs bound once; returns its run."""
        nodes, inits, inputs, outputs, names = [], [], [], [], {}
        for j, (a, b, out) in enumerate(self.jobs):
            for x in (a, b):
                if id(x) in names:
                    continue
                names[id(x)] = f"t{len(names)}"
                if x.ndim == 2:  # a weight: an initializer, as in the model's graph
                    inits.append(numpy_helper.from_array(x, names[id(x)]))
                else:
                    inputs.append(helper.make_tensor_value_info(names[id(x)], TensorProto.FLOAT, x.shape))
            nodes.append(helper.make_node("MatMul", [names[id(a)], names[id(b)]], [f"y{j}"]))
            outputs.append(helper.make_tensor_value_info(f"y{j}", TensorProto.FLOAT, out.shape))
        graph = helper.make_graph(nodes, "matmul_floor", inputs, outputs, inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        binding = session.io_binding()
        for j, (a, b, out) in enumerate(self.jobs):
            for x in (a, b):
                if x.ndim == 3:
                    binding.bind_cpu_input(names[id(x)], x)
            binding.bind_output(f"y{j}", "cpu", 0, np.float32, out.shape, out.ctypes.data)
        return lambda: session.run_with_iobinding(binding)


class ElementwiseFloor:
    """The softmax, GELU and two LayerNorms of every layer alone, in torch: work that fusing
    cannot remove (a fused kernel still reads every score and activation once). Bias and
    residual adds are left out: they can ride in a GEMM's epilogue."""

    def __init__(self, cfg: FashionBertConfig, batch: int, seq: int):
        tokens = batch * seq
        self.layers = cfg.num_layers
        self.scores = torch.randn(batch * cfg.num_heads, seq, seq)
        self.ffn = torch.randn(tokens, cfg.intermediate_size)
        self.hidden = torch.randn(tokens, cfg.hidden_size)
        self.norm = torch.nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)

    @torch.inference_mode()
    def run(self) -> None:
        for _ in range(self.layers):
            torch.softmax(self.scores, -1)
            torch.nn.functional.gelu(self.ffn)
            self.norm(self.hidden)
            self.norm(self.hidden)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path, help="checkpoint (its bundle is exported on the fly if missing)")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=20, help="timing rounds (every contender once per round)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/fp32_gemm_floor.json"))
    args = ap.parse_args()
    torch_threads()
    threads = torch.get_num_threads()
    mb = resolve(args.model, args.data)
    store = FeatureStore(mb.data, mb.ck.config).ensure(mb.data.test)
    feeds = timing_feeds(mb, store, eval_pairs(mb.data), args.batch)
    width = int(feeds[INPUT_IDS].shape[1])  # text tokens as computed: padded to the batch's longest
    floor = MatMulFloor(matmuls(mb.ck.config, width), args.batch)
    assert floor.macs * 2 == flops_per_pair(mb.ck.config, width) * args.batch
    torch_runner = TorchRunner(mb.ck.model).activate()
    fused = OnnxRuntimeRunner(mb.bundle.graph("onnxruntime", "fp32"), threads=threads).activate()
    contenders = {"torch fp32 eager (model)": lambda: torch_runner.infer(feeds),
                  "onnxruntime fused fp32 (model)": lambda: fused.infer(feeds),
                  "torch matmuls alone": floor.run_torch,
                  "onnxruntime matmuls alone": floor.onnxruntime(threads),
                  ELEMENTWISE: ElementwiseFloor(mb.ck.config, args.batch, width + mb.ck.config.image_tokens).run}
    ms = dict(zip(contenders, median_ms_in_turns(list(contenders.values()), args.rounds)))
    peak = peak_flops(torch.float32)
    flops = 2 * floor.macs
    eager = ms["torch fp32 eager (model)"]
    best_floor = min(ms["torch matmuls alone"], ms["onnxruntime matmuls alone"])
    result = {
        "machine": {"platform": platform.platform(), "threads": threads, "peak_fp32_flops": peak, **versions()},
        "model": str(args.model), "batch": args.batch, "text_width": width, "seq_len": width + mb.ck.config.image_tokens,
        "matmul_flops_per_batch": flops,
        "median_ms": ms,
        "pct_of_peak": {k: 100 * flops / (v / 1e3) / peak for k, v in ms.items() if k != ELEMENTWISE},
        "x_torch_eager": {k: eager / v for k, v in ms.items()},
        "matmul_share_of_eager": ms["torch matmuls alone"] / eager,
        "ceiling_x_torch_eager": eager / best_floor,
        "ceiling_x_torch_eager_at_peak": eager / (flops / peak * 1e3),
        "ceiling_x_torch_eager_with_elementwise": eager / (best_floor + ms[ELEMENTWISE]),
        "rounds": args.rounds,
    }
    table = Table(title=f"batch {args.batch}, {width} text + {mb.ck.config.image_tokens} image tokens, {threads} threads: "
                        f"median of {args.rounds} rounds in turns")
    for col in ("what runs", "ms / batch", "% of fp32 peak", "x torch eager"):
        table.add_column(col)
    for k, v in ms.items():
        table.add_row(k, f"{v:.0f}", f"{result['pct_of_peak'][k]:.0f}" if k in result["pct_of_peak"] else "-",
                      f"{result['x_torch_eager'][k]:.2f}")
    terminal.console().print(table)
    print(f"matmuls alone are {result['matmul_share_of_eager']:.0%} of torch eager's time; ceiling for any backend with these "
          f"GEMMs: {result['ceiling_x_torch_eager']:.2f}x torch eager (at 100 % of peak: {result['ceiling_x_torch_eager_at_peak']:.2f}x); "
          f"with softmax, GELU and LayerNorm as torch runs them: {result['ceiling_x_torch_eager_with_elementwise']:.2f}x")
    write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
