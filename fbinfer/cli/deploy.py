"""Commands that turn a model into a served, measured engine: ``export``, ``build``, ``tune``,
``serve``, ``bench``, ``backends``, ``demo``."""
from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

import fbinfer.cli.options as o
from fbinfer.bench.config import BenchConfig, DriftSetConfig
from fbinfer.build.tensorrt import OPT_BATCH, WORKSPACE_MB
from fbinfer.cli.app import app, console
from fbinfer.errors import FbinferError
from fbinfer.export.config import CalibrationConfig, ExportConfig
from fbinfer.serve.config import CatalogOptions, Limits, api_key
from fbinfer.serve.run import ServeConfig
from fbinfer.serve.server import Ports
from fbinfer.terminal import elapsed
from fbinfer.tune.config import TUNE_LISTS, TuneConfig

X, C = ExportConfig, CalibrationConfig  # the defaults below are theirs


@app.command("export")
def export_cmd(
    model: Annotated[Path, typer.Argument(help="Checkpoint (model.pt) of a teacher or a student.")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Bundle folder (default: MODEL.bundle beside the checkpoint).")] = None,
    data: Annotated[Path | None, typer.Option("--data", "--calib-data", help="Real pairs: train split calibrates INT8, test split checks "
                                                                           "parity (default: the checkpoint's training data).")] = None,
    precision: Annotated[str, typer.Option(help="Comma list of fp32, fp16, int8.")] = ",".join(X.precisions),
    targets: Annotated[str, typer.Option(help="Comma list of tensorrt, onnxruntime, openvino.")] = ",".join(X.targets),
    max_batch: Annotated[int, typer.Option(help="Largest batch the graphs accept.")] = X.max_batch,
    attention: Annotated[str, typer.Option(help="matmul (MatMul-Softmax-MatMul, TensorRT >= 10.12) or onnx-attention (ONNX Attention "
                                                "op, opset 23, TensorRT >= 10.14).")] = X.attention,
    fp16_fp32_ops: Annotated[str, typer.Option(help="Op types kept FP32 in the FP16/INT8 graphs.")] = ",".join(X.fp32_ops),
    calib_method: Annotated[str, typer.Option(help="max or entropy (Model Optimizer's INT8 calibrators; the ONNX Runtime graph uses "
                                                   "the same).")] = C.method,
    calib_batches: Annotated[int, typer.Option(help="Calibration batches of real training pairs.")] = C.batches,
    calib_batch_size: Annotated[int, typer.Option()] = C.batch_size,
    int8_exclude: Annotated[str, typer.Option(help="Parts kept out of INT8: embeddings, head, layer:N (comma list; '' for none).")] = ",".join(C.exclude),
    cpu_int8: Annotated[str, typer.Option(help="ONNX Runtime CPU INT8: auto (faster at equal drift), dynamic or qdq.")] = X.cpu_int8,
    int8_smooth: Annotated[float, typer.Option(help="INT8 (CPU and TensorRT graphs): SmoothQuant migration strength alpha in [0, 1]; "
                                                    "0 turns it off.")] = X.smooth_alpha,
    int8_attention: Annotated[bool, typer.Option(help="TensorRT INT8: Q/DQ on the attention products too (INT8 MHA); off: they stay "
                                                      "FP16 (docs/results/int8_quantizers.md).")] = X.int8_attention,
    parity_queries: Annotated[int, typer.Option(help="Queries per direction (101 candidates each) for the parity check.")] = X.parity_queries,
    force: Annotated[bool, typer.Option(help="Overwrite a non-empty bundle folder.")] = False,
) -> None:
    """Export ONNX graphs for TensorRT (FP32/FP16/INT8) and ONNX Runtime (fused FP32, CPU INT8), each checked against PyTorch."""
    from fbinfer.data.source import load_data
    from fbinfer.export.exporter import default_bundle_dir, export_bundle
    from fbinfer.export.report import bundle_table
    from fbinfer.model.checkpoint import load_checkpoint
    from fbinfer.threads import torch_threads

    torch_threads()
    data = load_checkpoint(model).training_data(data)
    cc = CalibrationConfig(method=calib_method, batches=calib_batches, batch_size=calib_batch_size, exclude=o.csv(int8_exclude))
    ec = ExportConfig(precisions=o.csv(precision), targets=o.csv(targets), attention=attention, max_batch=max_batch,
                      fp32_ops=o.csv(fp16_fp32_ops), calibration=cc, cpu_int8=cpu_int8, smooth_alpha=int8_smooth,
                      int8_attention=int8_attention, parity_queries=parity_queries)
    out = out or default_bundle_dir(model)
    manifest = export_bundle(model, load_data(data), out, ec, force=force)
    console.print(bundle_table(manifest))
    console.print(f"wrote {out}")


@app.command("build")
def build_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder made by fbinfer export.")],
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8: which TensorRT graph of the bundle to build.")] = "fp16",
    max_batch: Annotated[int | None, typer.Option(help="Largest batch of the optimization profile (default: the bundle's).")] = None,
    opt_batch: Annotated[int, typer.Option(help="Batch the kernels are tuned for.")] = OPT_BATCH,
    workspace: Annotated[int, typer.Option(help="Builder workspace in MB.")] = WORKSPACE_MB,
    timing_cache: Annotated[Path | None, typer.Option(help="Timing cache file, read if present and written back.")] = None,
) -> None:
    """Build a TensorRT engine (strongly typed) from a bundle's graph; needs TensorRT and a CUDA GPU."""
    from fbinfer.build.tensorrt import build_engine

    record = build_engine(bundle, precision, max_batch, opt_batch, workspace, timing_cache)
    console.print(f"wrote {bundle / record['file']} ({record['gpu']}, TensorRT {record['tensorrt']}, {record['build_seconds']} s)")


@app.command("tune")
def tune_cmd(
    model: Annotated[Path, typer.Argument(help="Bundle folder, or a checkpoint (exported into MODEL.bundle when needed).")],
    data: Annotated[Path | None, typer.Option("--data", help="Data for calibration, tuning lists and timing (default: the checkpoint's "
                                                             "training data).")] = None,
    backends: Annotated[str, typer.Option(help="Comma list of backends to tune: openvino, onnxruntime.")] = ",".join(TuneConfig.backends),
    max_drift: Annotated[float, typer.Option(help="The drift bar: Rank@1 points (both directions) within which, and within which its 95 % "
                                                  "interval must fit, a plan may be chosen.")] = TuneConfig.max_drift,
    batch: Annotated[int, typer.Option(help="Batch size every candidate is timed at.")] = TuneConfig.batch,
    queries: Annotated[int, typer.Option(help="Tuning lists: queries per direction (scored only as far as a candidate's verdict "
                                              "needs).", callback=o.positive("--queries"))] = TUNE_LISTS.queries,
    seconds: Annotated[float, typer.Option(help="Minimum timed seconds for the slowest candidate.")] = TuneConfig.min_seconds,
) -> None:
    """Choose each backend's fastest plan within the drift bar, measured here (fbinfer.load and the bench use it)."""
    from fbinfer.tune.report import tune_table
    from fbinfer.tune.tuner import tune

    tune_cfg = TuneConfig(backends=o.csv(backends), max_drift=max_drift, batch=batch, min_seconds=seconds,
                    lists=replace(TUNE_LISTS, queries=queries))
    tuning = tune(model, data, tune_cfg, progress=lambda m: console.print(f"[dim]{m}[/]"))
    console.print(tune_table(tuning, str(model)))
    for b, plan in tuning["plans"].items():
        console.print(f"{b}: " + (f"{plan['name']}, {plan['pairs_per_s']:.0f} pairs/s at batch {tuning['batch']}" if plan
                                  else f"no candidate within the bar of {tuning['bar']:g} point (fbinfer.load keeps fp32)"))


@app.command("serve")
def serve_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder made by fbinfer export.")],
    backend: Annotated[str | None, typer.Option(help="onnxruntime, openvino or tensorrt: what runs the bundle inside Triton (default: "
                                                     "the backend of the fastest plan fbinfer tune chose, else onnxruntime).")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32, fp16, bf16 or int8, as the backend offers (default: its tuned plan, "
                                                       "else fp32).")] = None,
    http_port: Annotated[int, typer.Option(help="Triton's HTTP/REST port.")] = Ports.http,
    grpc_port: Annotated[int, typer.Option(help="Triton's gRPC port.")] = Ports.grpc,
    metrics_port: Annotated[int, typer.Option(help="Triton's Prometheus metrics port.")] = Ports.metrics,
    max_batch: Annotated[int, typer.Option(help="Largest batch Triton's dynamic batcher forms.")] = ServeConfig.max_batch,
    max_queue_delay_us: Annotated[int, typer.Option(help="How long the dynamic batcher waits to fill a batch.")] = ServeConfig.max_queue_delay_us,
    instances: Annotated[int, typer.Option(help="Model instances (processes) per model.")] = ServeConfig.instances,
    index: Annotated[Path | None, typer.Option(help="Serve this catalogue index too: Triton model search, REST POST /v1/search, item ids in "
                                                    "/v1/rerank; fbinfer index add while serving is picked up without a restart.")] = None,
    rest_port: Annotated[int, typer.Option(help="fbinfer's REST front: /v1/rerank (Cohere's form), /v1/search, /health.")] = Ports.rest,
    depth: Annotated[int, typer.Option(help="Candidates a search reranks by default (0: the dual encoder alone).")] = CatalogOptions.depth,
    ranking_instances: Annotated[int, typer.Option(help="Instances of the rerank and search models: concurrent queries whose rerank "
                                                        "pairs Triton's batcher merges.")] = CatalogOptions.instances,
    max_documents: Annotated[int, typer.Option(help="Most documents per rerank request (and the largest k or depth of a search).")] = Limits.documents,
    max_body_mb: Annotated[float, typer.Option(help="Largest REST request body, MB.")] = Limits.body_bytes / 2**20,
    max_caption_chars: Annotated[int, typer.Option(help="Longest caption a REST request may send.")] = Limits.caption_chars,
    max_connections_per_client: Annotated[int, typer.Option(help="Open REST connections one address may hold (more: 429).")] = Limits.connections_per_client,
    idle_timeout_s: Annotated[float, typer.Option(help="Close a REST connection idle or stalled this long.")] = Limits.idle_timeout_s,
    api_key_file: Annotated[Path | None, typer.Option(help="A file holding a shared secret: REST requests must send Authorization: Bearer "
                                                           "SECRET (all but /health). Or set FBINFER_API_KEY.")] = None,
    repository: Annotated[Path | None, typer.Option(help="Write the served repository here and keep it (default: a temporary one).")] = None,
    write_repository: Annotated[Path | None, typer.Option(help="Only write the GPU repository for NVIDIA's Triton container here; serve "
                                                               "nothing.")] = None,
    platform: Annotated[str, typer.Option(help="With --write-repository: onnxruntime or tensorrt.")] = "onnxruntime",
) -> None:
    """Serve a bundle with NVIDIA Triton Inference Server (foreground; Ctrl-C or SIGTERM stops it)."""
    from fbinfer.serve.run import serve
    from fbinfer.serve.run import write_repository as write_gpu

    if write_repository is not None:
        out = write_gpu(bundle, write_repository, platform, precision or "fp32", max_batch, max_queue_delay_us)
        console.print(f"wrote {out} (platform {platform}); run it on a GPU with NVIDIA's Triton container, see README")
        return
    sc = ServeConfig(backend, precision, Ports(http_port, grpc_port, metrics_port, rest_port), max_batch, max_queue_delay_us, instances,
                     CatalogOptions(index, depth, max_documents, ranking_instances),
                     Limits(int(max_body_mb * 2**20), max_documents, max_caption_chars, max_connections_per_client, idle_timeout_s),
                     api_key(api_key_file))
    serve(bundle, sc, repository, log=console.print)


@app.command("bench")
def bench_cmd(
    models: Annotated[list[Path] | None, typer.Argument(help="Checkpoints (exported on the fly into MODEL.bundle) or bundles; default: "
                                                             "the demo's.")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Data whose test split (or held-out synthetic catalogue) makes the drift set "
                                                             "(default: each checkpoint's training data).")] = None,
    batch: Annotated[str, typer.Option(help="Comma list of batch sizes.")] = ",".join(map(str, BenchConfig.batches)),
    backends: Annotated[str | None, typer.Option(help="Comma list of rows (default: every timed row available here; the "
                                                      "numerics-only TensorRT graph rows run when named).")] = None,
    drift_queries: Annotated[int, typer.Option(help="Drift set: queries per direction.")] = DriftSetConfig.queries,
    drift_candidates: Annotated[int, typer.Option(help="Drift set: candidates per query, the truth included.")] = DriftSetConfig.candidates,
    seconds: Annotated[float, typer.Option(help="Minimum seconds per batch size for the slowest row: its timed calls and, head to head, "
                                                  "the pauses before them.")] = BenchConfig.min_seconds,
    max_drift: Annotated[float, typer.Option(help="The drift bar: Rank@1 points (both directions) within which, and within which its 95 % "
                                                  "interval must fit, a path counts as within.")] = BenchConfig.max_drift,
    pause_ms: Annotated[float, typer.Option(help="Head to head of the summary's contenders: untimed pause before each call, for the "
                                                 "last runtime's threads to stop spinning.")] = BenchConfig.pause_s * 1e3,
    length_groups: Annotated[int | None, typer.Option(help="fbinfer's rows score a batch as up to this many sub-batches by caption length, "
                                                           "each padded to its own longest (default: each backend's; 1: whole; the peers "
                                                           "run it whole).")] = BenchConfig.length_groups,
    json_out: o.JsonOut = None,
    report: Annotated[Path | None, typer.Option(help="Folder for report.md and PNG plots.", callback=o.writable("--report", "report.md"))] = None,
) -> None:
    """Throughput, latency and Rank@1 drift (with 95 % intervals) of every backend and precision against torch fp32."""
    from fbinfer.bench.report import bench_table, summary_table, write_report
    from fbinfer.bench.run import bench
    from fbinfer.demo import default_workdir, demo_models
    from fbinfer.fileio import write_json

    if not models:
        models = demo_models(default_workdir())
        if not models:
            raise FbinferError(f"nothing to bench: no model given and no demo models in {default_workdir()}; run `fbinfer demo` first")
    bc = BenchConfig(batches=o.ints(batch, "--batch"), backends=o.csv(backends) if backends else None, min_seconds=seconds,
                     max_drift=max_drift, pause_s=pause_ms / 1e3, length_groups=length_groups,
                     drift_set=DriftSetConfig(queries=drift_queries, candidates=drift_candidates)).validate()
    began = time.perf_counter()
    result = bench(models, data, bc, progress=lambda m: console.print(f"[dim]{elapsed(began)} {m}[/]"))
    console.print(bench_table(result))
    if result["summary"]:
        console.print(summary_table(result))
    for k, why in result["skipped"].items():
        console.print(f"[dim]not run: {k}: {why}[/]")
    if json_out:
        write_json(json_out, result)
        console.print(f"wrote {json_out}")
    if report:
        console.print("wrote " + ", ".join(str(p) for p in write_report(result, report)))


@app.command("backends")
def backends_cmd() -> None:
    """The backends, the precisions each offers, and why any cannot run on this machine."""
    from rich.table import Table

    from fbinfer.backends import describe

    table = Table(title="fbinfer backends on this machine")
    for col in ("backend", "runs", "precisions", "available here"):
        table.add_column(col)
    for name, b in describe().items():
        table.add_row(name, b["runs"], ", ".join(b["precisions"]), "yes" if b["unavailable"] is None else f"no: {b['unavailable']}")
    console.print(table)


@app.command("demo")
def demo_cmd(
    workdir: Annotated[Path | None, typer.Option(help="Where the demo keeps its data and models.")] = None,
    fresh: Annotated[bool, typer.Option(help="Remake everything instead of reusing earlier results.")] = False,
) -> None:
    """Make a small data set, train a small teacher, evaluate it, and run every later stage."""
    from fbinfer.demo import DemoConfig, default_workdir, run_demo

    run_demo(workdir or default_workdir(), DemoConfig(), console, fresh=fresh)
