"""The ``fbinfer`` command: a thin typer layer over the package; errors become one line and exit 1."""
from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fbinfer.bench.config import BenchConfig, DriftSetConfig
from fbinfer.errors import FbinferError
from fbinfer.fileio import WRITE_ERRORS
from fbinfer.outputs import check_writable
from fbinfer.search.config import EmbedConfig
from fbinfer.serve.config import CatalogOptions, Limits, api_key
from fbinfer.serve.server import Ports
from fbinfer.tune.config import TUNE_LISTS, TuneConfig

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="FashionBERT: train, distil, export, build engines and benchmark ranking drift.")
data_app = typer.Typer(no_args_is_help=True, help="Make or prepare data sets.")
app.add_typer(data_app, name="data")
embed_app = typer.Typer(no_args_is_help=True, help="The dual encoder that makes a catalogue searchable.")
app.add_typer(embed_app, name="embed")
index_app = typer.Typer(no_args_is_help=True, help="Catalogue indexes (faiss) for search.")
app.add_typer(index_app, name="index")
console = Console(width=None if sys.stdout.isatty() else 240)  # a log keeps every table's figures (rich cuts at 80 columns)

DataOpt = Annotated[Path, typer.Option("--data", help="Data folder (train.jsonl, test.jsonl, images/) or a Fashion-Gen .h5 file.")]
TrainPrecisionOpt = Annotated[str, typer.Option("--precision", help="Forward-pass precision: fp32, or bf16 autocast (fp32 weights and "
                                                "optimizer; several times faster on CPUs with AMX and on GPUs).")]


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option("-o", "--out", help="Folder to create.")],
    products: Annotated[int, typer.Option(help="Number of products.")] = 2000,
    views: Annotated[int, typer.Option(help="Images per product.")] = 2,
    seed: Annotated[int, typer.Option()] = 0,
    force: Annotated[bool, typer.Option(help="Replace a non-empty folder.")] = False,
) -> None:
    """Generate a Fashion-Gen-like synthetic catalogue (images, captions, splits, candidate lists)."""
    from fbinfer.data.synth import SynthConfig, synthesize

    stats = synthesize(out, SynthConfig(products=products, views=views, seed=seed), force=force)
    console.print(f"wrote {out}: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in stats.items()))


@data_app.command("features")
def data_features(
    data: DataOpt,
    config: Annotated[str, typer.Option(help="Model config whose patch input to compute.")] = "fashionbert-mini",
    feature_layer: Annotated[str | None, typer.Option(help="blocks (320-d) or head (1280-d).")] = None,
    patch_input: Annotated[str | None, typer.Option(help="features or pixels.")] = None,
) -> None:
    """Compute and cache patch features for every image of the data (done on demand otherwise)."""
    from fbinfer.data.features import FeatureStore
    from fbinfer.data.source import load_data
    from fbinfer.model.config import preset
    from fbinfer.threads import torch_threads

    torch_threads()
    src = load_data(data)
    store = FeatureStore(src, preset(config, feature_layer=feature_layer, patch_input=patch_input)).ensure(src.train + src.test)
    console.print(f"features for {len(store.rows)} images in {store.dir}")


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    data: DataOpt,
    out: Annotated[Path, typer.Option("-o", "--out", help="Checkpoint to write (model.pt).")],
    recipe: Annotated[str | None, typer.Option(help="Run a named recipe instead (teacher, teacher-short; README lists what each makes "
                                                    "and how long it takes). It sets every training option but --seed and --checkpoint-every.")] = None,
    config: Annotated[str, typer.Option(help="fashionbert-mini | fashionbert-mini-2l | fashionbert-demo | fashionbert-base | fashionbert-tiny")] = "fashionbert-mini",
    init: Annotated[str | None, typer.Option(help="'minilm', a local BERT folder, or 'none' for random init.")] = None,
    layers: Annotated[int | None, typer.Option(help="Override the number of encoder layers.")] = None,
    patch_input: Annotated[str | None, typer.Option(help="features (CNN patch features) or pixels (raw-pixel patch embedding).")] = None,
    feature_layer: Annotated[str | None, typer.Option(help="EfficientNet-Lite0 layer: blocks (320-d) or head (1280-d).")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs over the training items (if --steps is not given).")] = None,
    batch_size: Annotated[int, typer.Option()] = 32,
    lr: Annotated[float, typer.Option(help="Learning rate of the pretrained encoder.")] = 1e-4,
    head_lr: Annotated[float, typer.Option(help="Learning rate of the patch embedding and heads.")] = 1e-4,
    loss_weighting: Annotated[str, typer.Option(help="grad (paper), loss (released code) or fixed.")] = "grad",
    fixed_weights: Annotated[str, typer.Option(help="MLM,MPM,TIA weights for --loss-weighting fixed.")] = "1,1,1",
    tia_warmup_steps: Annotated[int, typer.Option(help="First steps: TIA only, random negatives, no masking, constant lr (a curriculum; docs/training.md).")] = 200,
    hard_ratio: Annotated[float, typer.Option(help="Share of negatives from the same sub-category after the warm-up (the rest: any other product).")] = 0.5,
    lists: Annotated[int, typer.Option(help="Ranking lists per batch after the warm-up; TIA adds their softmax cross-entropy.")] = 0,
    list_size: Annotated[int, typer.Option(help="Pairs per ranking list (the truth first).")] = 16,
    start: Annotated[Path | None, typer.Option("--from", help="Fine-tune this FashionBERT checkpoint (its config and vocab; no alignment or TIA warm-up).")] = None,
    mine_negatives: Annotated[Path | None, typer.Option(help="An embedding model (fbinfer embed train): the hard negatives become the other "
                                                              "products it ranks nearest each caption, what a reranker sees in its top-k.")] = None,
    mined_k: Annotated[int, typer.Option(help="With --mine-negatives: nearest products per caption to draw from.")] = 16,
    precision: TrainPrecisionOpt = "fp32",
    checkpoint_every: Annotated[int, typer.Option()] = 200,
    seed: Annotated[int, typer.Option()] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from OUT.resume.")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing OUT and its resume state.")] = False,
) -> None:
    """Pre-train FashionBERT (MLM + MPM + TIA with adaptive loss weights)."""
    from fbinfer.data.source import load_data
    from fbinfer.model.config import preset
    from fbinfer.training.trainer import TrainConfig, train

    if recipe:
        from fbinfer.recipes import find_recipe, train_recipe

        rec = find_recipe(recipe, "train")
        refuse_beside_recipe(ctx, recipe)
        console.print(rec.describe(recipe))
        source = load_data(data)
        train_recipe(rec, source, out, console, seed, checkpoint_every, resume, force)
        console.print(f"wrote {out}")
        console.print(rec.measured(recipe, out, source))
        return
    try:
        weights = tuple(float(x) for x in fixed_weights.split(","))
    except ValueError:
        raise FbinferError(f"--fixed-weights: {fixed_weights!r} is not three comma-separated numbers") from None
    cfg = preset(config, num_layers=layers, patch_input=patch_input, feature_layer=feature_layer)
    if init is not None:
        cfg = replace(cfg, init=None if init.lower() == "none" else init)
    tc = TrainConfig(steps=steps, epochs=epochs if steps is None else None, batch_size=batch_size, lr=lr, head_lr=head_lr,
                     weighting=loss_weighting, fixed_weights=weights, checkpoint_every=checkpoint_every, seed=seed,
                     tia_warmup_steps=tia_warmup_steps, hard_ratio=hard_ratio, lists=lists, list_size=list_size,
                     start=str(start) if start else None, precision=precision,
                     mine_negatives=str(mine_negatives) if mine_negatives else None, mined_k=mined_k).validate()
    source = load_data(data)
    mined = None
    if mine_negatives is not None:
        from fbinfer.search.mining import mine_negatives as mine

        mined = mine(mine_negatives, source, source.train, mined_k)
    result = train(source, cfg, tc, out, resume=resume, force=force, mined=mined)
    console.print(f"wrote {out} after {result.steps} steps in {result.seconds:.0f} s")


@app.command("distill")
def distill_cmd(
    ctx: typer.Context,
    teacher: Annotated[Path, typer.Argument(help="Teacher checkpoint (model.pt).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Student checkpoint to write.")],
    recipe: Annotated[str | None, typer.Option(help="Run a named recipe instead (student; README lists what it makes and how long "
                                                    "it takes). It sets every distillation option but --seed, --checkpoint-every and the table's.")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Data folder or Fashion-Gen .h5 (default: the teacher's training data).")] = None,
    layers: Annotated[int, typer.Option(help="Student encoder layers.")] = 2,
    hidden: Annotated[int | None, typer.Option(help="Student width (default: the teacher's).")] = None,
    heads: Annotated[int | None, typer.Option(help="Student attention heads (default: width / the teacher's head size).")] = None,
    init_layers: Annotated[str, typer.Option(help="Teacher layers the student starts as: uniform (TinyBERT's map) or first (the paper's truncation).")] = "uniform",
    steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs over the training items (if --steps is not given).")] = None,
    batch_size: Annotated[int, typer.Option(help="Global batch (split over torchrun processes).")] = 32,
    lr: Annotated[float, typer.Option(help="Student learning rate (peak; linear warm-up and decay).")] = 3e-4,
    temperature: Annotated[float, typer.Option(help="Temperature of the TIA logit distillation.")] = 2.0,
    weights: Annotated[str, typer.Option(help="Loss weights, e.g. 'kd=1,rank=1,hidden=1,attention=1,embedding=1,tia=1,mlm=0,mpm=0' (unnamed terms keep these defaults).")] = "",
    extra_negatives: Annotated[float, typer.Option(help="Extra same-sub-category negatives per batch, as a share of the batch.")] = 0.5,
    hard_ratio: Annotated[float, typer.Option(help="Share of the pairs' negatives from the same sub-category (the rest: any other product).")] = 0.5,
    lists: Annotated[int, typer.Option(help="Ranking lists per batch for the rank term (one anchor, candidates from its sub-category); 0 = off.")] = 0,
    list_size: Annotated[int, typer.Option(help="Pairs per ranking list (the truth first).")] = 16,
    dropout: Annotated[float | None, typer.Option(help="Student dropout (default: the teacher's).")] = None,
    precision: TrainPrecisionOpt = "fp32",
    quantize: Annotated[str | None, typer.Option(help="int8: quantization-aware distillation, INT8 fake quantization of the encoder's Linear layers in the loop (NVIDIA Model Optimizer).")] = None,
    start: Annotated[Path | None, typer.Option("--from", help="Go on from this distilled student with a fresh schedule (its shape, layer map and "
                                               "projections; e.g. --quantize int8 as a short fine-tune).")] = None,
    checkpoint_every: Annotated[int, typer.Option()] = 200,
    seed: Annotated[int, typer.Option()] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from OUT.resume (with a larger --steps: extend a finished run; "
                                               "the checkpoint's meta records what a resume changed).")] = False,
    compare: Annotated[bool, typer.Option(help="Finish with the teacher vs student table (Rank@K, parameters, pairs/s).")] = True,
    queries: Annotated[int | None, typer.Option(help="Eval queries per direction for the table (default: all, as fbinfer eval).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the comparison as JSON.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing OUT and its resume state.")] = False,
) -> None:
    """Distil a teacher into a smaller FashionBERT (also under torchrun --nproc_per_node N)."""
    from fbinfer.data.source import load_data
    from fbinfer.distill.compare import compare_table, measure, write_comparison
    from fbinfer.distill.student import StudentSpec
    from fbinfer.distill.trainer import DistillConfig, LossWeights, distill
    from fbinfer.model.checkpoint import load_checkpoint

    if queries is not None and queries <= 0:
        raise FbinferError(f"--queries: must be positive, got {queries}")
    if recipe:
        from fbinfer.recipes import distill_recipe, find_recipe

        rec = find_recipe(recipe, "distill")
        refuse_beside_recipe(ctx, recipe, also=("data", "compare", "queries", "json_out"))
    else:
        dc = DistillConfig(steps=steps, epochs=epochs if steps is None else None, batch_size=batch_size, lr=lr, temperature=temperature,
                           weights=LossWeights.parse(weights), extra_negatives=extra_negatives, hard_ratio=hard_ratio, lists=lists,
                           list_size=list_size, dropout=dropout, checkpoint_every=checkpoint_every, seed=seed,
                           precision=precision, quantize=quantize, start=str(start) if start else None).validate()
    source = load_data(load_checkpoint(teacher).training_data(data))
    if json_out:
        check_writable(json_out, "--json")
    if recipe:
        console.print(rec.describe(recipe))
        distill_recipe(rec, teacher, source, out, console, seed, checkpoint_every, resume, force)
        done = f"wrote {out}"
    else:
        result = distill(teacher, source, StudentSpec(layers, hidden, heads, init_layers), dc, out, resume=resume, force=force)
        done = (f"wrote {out} after {result.steps} steps in {result.seconds:.0f} s (student layers started as teacher "
                f"layers {result.init_layers} and learned from teacher layers {result.loss_layers})")
    if os.environ.get("RANK", "0") != "0":
        return
    console.print(done)
    if compare:
        r = measure({"teacher": teacher, out.name: out}, source, queries)
        console.print(compare_table(r["teacher"], {out.name: r[out.name]}))
        if json_out:
            write_comparison(json_out, r["teacher"], {out.name: r[out.name]})
            console.print(f"wrote {json_out}")
    if recipe:
        console.print(rec.measured(recipe, out, source, teacher))


@app.command("eval")
def eval_cmd(
    model: Annotated[Path, typer.Argument(help="Checkpoint (model.pt).")],
    data: DataOpt,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result as JSON.")] = None,
    queries: Annotated[int | None, typer.Option(help="Use the first N queries of the fixed lists (default: all, at most 1,000).")] = None,
    batch_size: Annotated[int, typer.Option()] = 64,
) -> None:
    """Rank@1/5/10 both directions, TIA accuracy and AUC (the paper's protocol)."""
    from fbinfer.data.source import load_data
    from fbinfer.evaluation.run import run_eval

    if queries is not None and queries <= 0:
        raise FbinferError(f"--queries: must be positive, got {queries}")
    run_eval(model, load_data(data), console, json_out, queries, batch_size)


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


@app.command("export")
def export_cmd(
    model: Annotated[Path, typer.Argument(help="Checkpoint (model.pt) of a teacher or a student.")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Bundle folder (default: MODEL.bundle beside the checkpoint).")] = None,
    data: Annotated[Path | None, typer.Option("--data", "--calib-data", help="Real pairs: train split calibrates INT8, test split checks parity (default: the checkpoint's training data).")] = None,
    precision: Annotated[str, typer.Option(help="Comma list of fp32, fp16, int8.")] = "fp32,fp16,int8",
    targets: Annotated[str, typer.Option(help="Comma list of tensorrt, onnxruntime, openvino.")] = "tensorrt,onnxruntime,openvino",
    max_batch: Annotated[int, typer.Option(help="Largest batch the graphs accept.")] = 256,
    attention: Annotated[str, typer.Option(help="matmul (MatMul-Softmax-MatMul, TensorRT >= 10.12) or onnx-attention (ONNX Attention op, opset 23, TensorRT >= 10.14).")] = "matmul",
    fp16_fp32_ops: Annotated[str, typer.Option(help="Op types kept FP32 in the FP16/INT8 graphs.")] = "LayerNormalization",
    calib_method: Annotated[str, typer.Option(help="max or entropy (Model Optimizer's INT8 calibrators; the ONNX Runtime graph uses the same).")] = "max",
    calib_batches: Annotated[int, typer.Option(help="Calibration batches of real training pairs.")] = 16,
    calib_batch_size: Annotated[int, typer.Option()] = 32,
    int8_exclude: Annotated[str, typer.Option(help="Parts kept out of INT8: embeddings, head, layer:N (comma list; '' for none).")] = "embeddings,head,layer:0",
    cpu_int8: Annotated[str, typer.Option(help="ONNX Runtime CPU INT8: auto (faster at equal drift), dynamic or qdq.")] = "auto",
    int8_smooth: Annotated[float, typer.Option(help="INT8 (CPU and TensorRT graphs): SmoothQuant migration strength alpha in [0, 1]; 0 turns it off.")] = 0.75,
    int8_attention: Annotated[bool, typer.Option(help="TensorRT INT8: Q/DQ on the attention products too (INT8 MHA); off: they stay FP16 (docs/results/int8_quantizers.md).")] = False,
    parity_queries: Annotated[int, typer.Option(help="Queries per direction (101 candidates each) for the parity check.")] = 8,
    force: Annotated[bool, typer.Option(help="Overwrite a non-empty bundle folder.")] = False,
) -> None:
    """Export ONNX graphs for TensorRT (FP32/FP16/INT8) and ONNX Runtime (fused FP32, CPU INT8), each checked against PyTorch."""
    from fbinfer.data.source import load_data
    from fbinfer.export.exporter import ExportConfig, default_bundle_dir, export_bundle
    from fbinfer.export.int8 import CalibrationConfig
    from fbinfer.export.report import bundle_table
    from fbinfer.model.checkpoint import load_checkpoint
    from fbinfer.threads import torch_threads

    torch_threads()
    data = load_checkpoint(model).training_data(data)
    cc = CalibrationConfig(method=calib_method, batches=calib_batches, batch_size=calib_batch_size, exclude=_csv(int8_exclude))
    ec = ExportConfig(precisions=_csv(precision), targets=_csv(targets), attention=attention, max_batch=max_batch,
                      fp32_ops=_csv(fp16_fp32_ops), calibration=cc, cpu_int8=cpu_int8, smooth_alpha=int8_smooth, int8_attention=int8_attention,
                      parity_queries=parity_queries)
    out = out or default_bundle_dir(model)
    manifest = export_bundle(model, load_data(data), out, ec, force=force)
    console.print(bundle_table(manifest))
    console.print(f"wrote {out}")


@app.command("build")
def build_cmd(
    bundle: Annotated[Path, typer.Argument(help="Bundle folder made by fbinfer export.")],
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8: which TensorRT graph of the bundle to build.")] = "fp16",
    max_batch: Annotated[int | None, typer.Option(help="Largest batch of the optimization profile (default: the bundle's).")] = None,
    opt_batch: Annotated[int, typer.Option(help="Batch the kernels are tuned for.")] = 64,
    workspace: Annotated[int, typer.Option(help="Builder workspace in MB.")] = 4096,
    timing_cache: Annotated[Path | None, typer.Option(help="Timing cache file, read if present and written back.")] = None,
) -> None:
    """Build a TensorRT engine (strongly typed) from a bundle's graph; needs TensorRT and a CUDA GPU."""
    from fbinfer.backends.tensorrt import build_engine

    record = build_engine(bundle, precision, max_batch, opt_batch, workspace, timing_cache)
    console.print(f"wrote {bundle / record['file']} ({record['gpu']}, TensorRT {record['tensorrt']}, {record['build_seconds']} s)")


@app.command("tune")
def tune_cmd(
    model: Annotated[Path, typer.Argument(help="Bundle folder, or a checkpoint (exported into MODEL.bundle when needed).")],
    data: Annotated[Path | None, typer.Option("--data", help="Data for calibration, tuning lists and timing (default: the checkpoint's training data).")] = None,
    backends: Annotated[str, typer.Option(help="Comma list of backends to tune: openvino, onnxruntime.")] = ",".join(TuneConfig.backends),
    max_drift: Annotated[float, typer.Option(help="The drift bar: Rank@1 points (both directions) within which, and within which its 95 % interval must fit, a plan may be chosen.")] = TuneConfig.max_drift,
    batch: Annotated[int, typer.Option(help="Batch size every candidate is timed at.")] = TuneConfig.batch,
    queries: Annotated[int, typer.Option(help="Tuning lists: queries per direction (scored only as far as a candidate's verdict needs).")] = TUNE_LISTS.queries,
    seconds: Annotated[float, typer.Option(help="Minimum timed seconds for the slowest candidate.")] = TuneConfig.min_seconds,
) -> None:
    """Choose each backend's fastest plan (INT8 graph and float groups, precision elsewhere) within the drift bar, measured here; fbinfer.load and the bench use it."""
    from fbinfer.tune.report import tune_table
    from fbinfer.tune.tuner import tune

    tc = TuneConfig(backends=_csv(backends), max_drift=max_drift, batch=batch, min_seconds=seconds,
                    lists=replace(TUNE_LISTS, queries=queries))
    tuning = tune(model, data, tc, progress=lambda m: console.print(f"[dim]{m}[/]"))
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
    http_port: Annotated[int, typer.Option(help="Triton's HTTP/REST port.")] = 8000,
    grpc_port: Annotated[int, typer.Option(help="Triton's gRPC port.")] = 8001,
    metrics_port: Annotated[int, typer.Option(help="Triton's Prometheus metrics port.")] = 8002,
    max_batch: Annotated[int, typer.Option(help="Largest batch Triton's dynamic batcher forms.")] = 64,
    max_queue_delay_us: Annotated[int, typer.Option(help="How long the dynamic batcher waits to fill a batch.")] = 500,
    instances: Annotated[int, typer.Option(help="Model instances (processes) per model.")] = 1,
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
    write_repository: Annotated[Path | None, typer.Option(help="Only write the GPU repository for NVIDIA's Triton container here; serve nothing.")] = None,
    platform: Annotated[str, typer.Option(help="With --write-repository: onnxruntime or tensorrt.")] = "onnxruntime",
) -> None:
    """Serve a bundle with NVIDIA Triton Inference Server (foreground; Ctrl-C or SIGTERM stops it)."""
    from fbinfer.serve.run import ServeConfig, serve
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
    models: Annotated[list[Path] | None, typer.Argument(help="Checkpoints (exported on the fly into MODEL.bundle) or bundles; default: the demo's.")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="Data whose test split (or held-out synthetic catalogue) makes the drift set (default: each checkpoint's training data).")] = None,
    batch: Annotated[str, typer.Option(help="Comma list of batch sizes.")] = ",".join(map(str, BenchConfig.batches)),
    backends: Annotated[str | None, typer.Option(help="Comma list of backends (default: every one available here).")] = None,
    drift_queries: Annotated[int, typer.Option(help="Drift set: queries per direction.")] = DriftSetConfig.queries,
    drift_candidates: Annotated[int, typer.Option(help="Drift set: candidates per query, the truth included.")] = DriftSetConfig.candidates,
    seconds: Annotated[float, typer.Option(help="Minimum timed seconds per batch size for the slowest row.")] = BenchConfig.min_seconds,
    max_drift: Annotated[float, typer.Option(help="The drift bar: Rank@1 points (both directions) within which, and within which its 95 % interval must fit, a path counts as within.")] = BenchConfig.max_drift,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the results as JSON.")] = None,
    report: Annotated[Path | None, typer.Option(help="Folder for report.md and PNG plots.")] = None,
) -> None:
    """Throughput, latency and Rank@1 drift (with 95 % intervals) of every backend and precision against torch fp32."""
    from fbinfer.bench.report import bench_table, summary_table, write_report
    from fbinfer.bench.run import bench
    from fbinfer.demo import default_workdir, demo_models
    from fbinfer.fileio import write_json

    try:
        batches = tuple(int(b) for b in _csv(batch))
    except ValueError:
        raise FbinferError(f"--batch: {batch!r} is not a comma list of integers") from None
    if not models:
        models = demo_models(default_workdir())
        if not models:
            raise FbinferError(f"nothing to bench: no model given and no demo models in {default_workdir()}; run `fbinfer demo` first")
    if json_out:
        check_writable(json_out, "--json")
    if report:
        check_writable(report / "report.md", "--report")
    bc = BenchConfig(batches=batches, backends=_csv(backends) if backends else None, min_seconds=seconds, max_drift=max_drift,
                     drift_set=DriftSetConfig(queries=drift_queries, candidates=drift_candidates)).validate()
    result = bench(models, data, bc, progress=lambda m: console.print(f"[dim]{m}[/]"))
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


@embed_app.command("train")
def embed_train_cmd(
    data: DataOpt,
    out: Annotated[Path, typer.Option("-o", "--out", help="Embedding model to write (embed.pt).")],
    teacher: Annotated[Path | None, typer.Option(help="A FashionBERT checkpoint: adds the KL towards its ranking of hard candidates.")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps (default 300).")] = 300,
    epochs: Annotated[float | None, typer.Option(help="Epochs over the products (if --steps is 0).")] = None,
    batch_size: Annotated[int, typer.Option(help="Items per step: two views of batch-size / 2 products.")] = 64,
    lr: Annotated[float, typer.Option(help="Learning rate of the pretrained text encoder.")] = 5e-5,
    head_lr: Annotated[float, typer.Option(help="Learning rate of the image tower, projections and product head.")] = 5e-4,
    dim: Annotated[int, typer.Option(help="Size of the shared space.")] = 256,
    hard_ratio: Annotated[float, typer.Option(help="Share of products drawn with a partner from the same sub-category.")] = 0.5,
    product_weight: Annotated[float, typer.Option(help="Weight of the image+text (product) term.")] = 0.5,
    kd_weight: Annotated[float, typer.Option(help="Weight of the teacher term.")] = 1.0,
    kd_temperature: Annotated[float, typer.Option(help="The teacher's softmax temperature.")] = 1.0,
    lists: Annotated[int, typer.Option(help="Teacher ranking lists per step.")] = 4,
    list_size: Annotated[int, typer.Option(help="Candidates per teacher list (the truth and others from its sub-category).")] = 8,
    tiny: Annotated[bool, typer.Option(help="A 64-wide random text tower (tests and smoke runs).")] = False,
    image_size: Annotated[int, typer.Option(help="Image side the patch features are taken at; with --grid-size, the reranker's "
                                                 "(an index's features must be the ones its FashionBERT reads).")] = EmbedConfig.image_size,
    grid_size: Annotated[int, typer.Option(help="Patch grid side (grid x grid patch features).")] = EmbedConfig.grid_size,
    dropout: Annotated[float, typer.Option()] = 0.1,
    precision: TrainPrecisionOpt = "fp32",
    checkpoint_every: Annotated[int, typer.Option()] = 200,
    seed: Annotated[int, typer.Option()] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from OUT.resume.")] = False,
    force: Annotated[bool, typer.Option(help="Replace an existing OUT and its resume state.")] = False,
) -> None:
    """Train the dual encoder (text, image and image+text in one space) for catalogue recall."""
    from fbinfer.data.source import load_data
    from fbinfer.search.train import EmbedTrainConfig, train_embed

    tc = EmbedTrainConfig(steps=steps or None, epochs=epochs if not steps else None, batch_size=batch_size, lr=lr, head_lr=head_lr,
                          hard_ratio=hard_ratio, product_weight=product_weight, teacher=str(teacher) if teacher else None,
                          kd_weight=kd_weight, kd_temperature=kd_temperature, lists=lists, list_size=list_size, precision=precision,
                          checkpoint_every=checkpoint_every, seed=seed).validate()
    cfg = EmbedConfig(dim=dim, tiny=tiny, dropout=dropout, image_size=image_size, grid_size=grid_size).validate()
    result = train_embed(load_data(data), cfg, tc, out, resume=resume, force=force)
    console.print(f"wrote {out} after {result.steps} steps in {result.seconds:.0f} s")


@embed_app.command("export")
def embed_export_cmd(
    model: Annotated[Path, typer.Argument(help="Embedding model (embed.pt).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Embedding bundle folder to write.")],
    data: Annotated[Path | None, typer.Option("--data", help="Data for the parity check (default: the model's training data).")] = None,
    force: Annotated[bool, typer.Option(help="Replace a bundle fbinfer made.")] = False,
) -> None:
    """Export the text, image and product towers as ONNX graphs, with parity against PyTorch per backend."""
    from fbinfer.data.source import load_data
    from fbinfer.search.checkpoint import load_embed
    from fbinfer.search.export import export_embed

    source = data or Path(load_embed(model).meta.get("data") or ".")
    manifest = export_embed(model, load_data(source), out, force=force)
    for backend, p in manifest["parity"].items():
        console.print(f"{backend}: " + (p["skipped"] if "skipped" in p else ", ".join(f"{k} max |diff| {v:.1e}" for k, v in p["max_abs_diff"].items())))
    console.print(f"wrote {out}")


@index_app.command("build")
def index_build_cmd(
    data: DataOpt,
    out: Annotated[Path, typer.Option("-o", "--out", help="Index folder to write (catalog.index).")],
    model: Annotated[Path, typer.Option("--model", help="Embedding model (embed.pt) or embedding bundle.")],
    kind: Annotated[str, typer.Option(help="auto (exact for small catalogues, HNSW above), flat, hnsw or ivfpq.")] = "auto",
    split: Annotated[str, typer.Option(help="Which items: all, train or test (eval-retrieval wants test).")] = "all",
    backend: Annotated[str | None, typer.Option(help="For a bundle: onnxruntime or openvino.")] = None,
    use_ray: Annotated[bool, typer.Option("--ray", help="Embed on Ray Data actors (a local Ray, or the cluster at RAY_ADDRESS).")] = False,
    force: Annotated[bool, typer.Option(help="Replace an index fbinfer made.")] = False,
) -> None:
    """Embed every catalogue item and build its faiss indexes (image, text, image+text)."""
    from fbinfer.data.source import load_data
    from fbinfer.search.index import build_index

    meta = build_index(model, load_data(data), out, kind, split, use_ray, force, backend)
    console.print(f"wrote {out}: {meta['count']} items, {meta['kind']} ({meta['faiss']['image']}), model {meta['model_sha256'][:12]}")


@index_app.command("add")
def index_add_cmd(
    index: Annotated[Path, typer.Argument(help="Index folder.")],
    data: DataOpt,
    split: Annotated[str, typer.Option(help="all, train or test.")] = "all",
) -> None:
    """Embed more items with the index's own model and add them (the folder is replaced whole)."""
    from fbinfer.data.source import load_data
    from fbinfer.search.index import add_to_index

    meta = add_to_index(index, load_data(data), split)
    console.print(f"{index}: now {meta['count']} items")


HintsOpt = Annotated[str, typer.Option(help="OpenVINO properties for the reranker, K=V,K=V (e.g. INFERENCE_PRECISION_HINT=bf16 "
                                            "with --precision int8: the student's fastest CPU path).")]


def _reranker(path: Path | None, backend: str | None, precision: str | None, hints: str):
    """The FashionBERT Matcher that reranks, or None."""
    from fbinfer.runtime.load import load

    if path is None:
        return None
    pairs = [h.split("=", 1) for h in _csv(hints)]
    if any(len(p) != 2 for p in pairs):
        raise FbinferError(f"--hints {hints!r}: expected KEY=VALUE pairs separated by commas")
    return load(path, backend=backend, precision=precision, **({"hints": dict(pairs)} if pairs else {}))


@app.command("search")
def search_cmd(
    index: Annotated[Path, typer.Argument(help="Index folder.")],
    text: Annotated[str | None, typer.Argument(help="A caption query.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="An image query (with a text query: image+text, same style).")] = None,
    k: Annotated[int, typer.Option("--k", help="Results to show.")] = 10,
    target: Annotated[str | None, typer.Option(help="image, text (captions) or product; default image, or product for text + image.")] = None,
    rerank: Annotated[Path | None, typer.Option(help="A FashionBERT bundle or checkpoint that rescores the top --depth.")] = None,
    depth: Annotated[int, typer.Option(help="Candidates the reranker scores.")] = 64,
    backend: Annotated[str | None, typer.Option(help="The reranker's backend (fbinfer backends).")] = None,
    precision: Annotated[str | None, typer.Option(help="The reranker's precision.")] = None,
    hints: HintsOpt = "",
) -> None:
    """Search a catalogue by caption, image or both; optionally rerank with FashionBERT."""
    from fbinfer.search.index import CatalogIndex
    from fbinfer.search.report import hits_table

    idx = CatalogIndex(index)
    matcher = _reranker(rerank, backend, precision, hints)
    hits = idx.search(text=text, image=image, k=k, target=target, rerank=matcher, depth=depth)
    console.print(hits_table(hits, f"{len(hits)} of {len(idx)} items" + (f", reranked by {matcher.backend} at depth {depth}" if matcher else "")))


@app.command("eval-retrieval")
def eval_retrieval_cmd(
    index: Annotated[Path, typer.Option("--index", help="An index of the test catalogue (fbinfer index build --split test).")],
    rerank: Annotated[Path | None, typer.Option(help="FashionBERT bundle or checkpoint: the two-stage and cross-encoder-alone systems.")] = None,
    depths: Annotated[str, typer.Option(help="Rerank depths.")] = "16,32,64,128",
    full_queries: Annotated[int, typer.Option(help="Queries per direction the cross-encoder scores against every item (0: skip).")] = 120,
    latency_queries: Annotated[int, typer.Option(help="Queries per direction and system timed one by one.")] = 32,
    backend: Annotated[str | None, typer.Option(help="The reranker's backend.")] = None,
    precision: Annotated[str | None, typer.Option(help="The reranker's precision.")] = None,
    hints: HintsOpt = "",
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result as JSON.")] = None,
    plot: Annotated[Path | None, typer.Option(help="PNG: Rank@1 against depth and against cost.")] = None,
    fusion_index: Annotated[Path | None, typer.Option(help="An index of a validation catalogue (never the test one, same embedding model): "
                                                            "fit the weight of FashionBERT's logit against the dual encoder's cosine there "
                                                            "and add the fused two-stage rows.")] = None,
) -> None:
    """Full-catalogue retrieval, both directions: dual encoder, two-stage at each depth (and fused), cross-encoder alone."""
    from fbinfer.fileio import write_json
    from fbinfer.search.evaluate import RetrievalConfig, evaluate_retrieval, plot_retrieval
    from fbinfer.search.index import CatalogIndex
    from fbinfer.search.report import retrieval_tables

    try:
        cfg = RetrievalConfig(tuple(int(d) for d in _csv(depths)), full_queries, latency_queries)
    except ValueError:
        raise FbinferError(f"--depths {depths!r}: comma-separated whole numbers") from None
    for p, opt in ((json_out, "--json"), (plot, "--plot")):
        if p is not None:
            check_writable(p, opt)
    idx = CatalogIndex(index)
    if fusion_index is not None and Path(fusion_index).resolve() == Path(index).resolve():
        raise FbinferError(f"--fusion-index {fusion_index}: the weights must be fitted on another catalogue than the one evaluated")
    fit_on = CatalogIndex(fusion_index, idx.embedder) if fusion_index is not None else None
    result = evaluate_retrieval(idx, _reranker(rerank, backend, precision, hints), cfg, fit_on)
    retrieval_tables(result, console)
    if json_out:
        write_json(json_out, result)
    if plot and rerank:
        plot_retrieval(result, plot)


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


def refuse_beside_recipe(ctx: typer.Context, recipe: str, also: tuple[str, ...] = ()) -> None:
    """A recipe sets its own options: one given on the command line as well is an error, not silently dropped."""
    kept = {"data", "out", "recipe", "seed", "checkpoint_every", "resume", "force", "teacher", *also}
    given = [p.opts[0] for p in ctx.command.params
             if p.name not in kept and getattr(ctx.get_parameter_source(p.name), "name", "") == "COMMANDLINE"]  # typer may vendor click
    if given:
        raise FbinferError(f"--recipe {recipe}: sets its own options; drop {', '.join(given)}")


def fail(message: str) -> None:
    """The one-line error: on stderr, exit 1."""
    Console(stderr=True).print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(1)


def main() -> None:
    try:
        app()
    except FbinferError as e:
        fail(str(e))
    except OSError as e:  # a disk that filled up or turned read-only outside an atomic write (a log line)
        if e.errno not in WRITE_ERRORS:
            raise
        fail(f"{e.filename or 'write'}: {e.strerror}")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
