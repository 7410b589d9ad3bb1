"""Commands that make data and models: ``data synth|features``, ``train``, ``distill``, ``eval``, ``embed train``."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Annotated

import typer

import fbinfer.cli.options as o
from fbinfer.cli.app import app, console, data_app, embed_app, refuse_beside_recipe
from fbinfer.data.synth import SynthConfig
from fbinfer.distill.config import DistillConfig, LossWeights, StudentSpec
from fbinfer.errors import FbinferError
from fbinfer.model.config import FashionBertConfig
from fbinfer.search.config import EmbedConfig, EmbedTrainConfig
from fbinfer.training.config import TrainConfig

T, D, E = TrainConfig, DistillConfig, EmbedTrainConfig  # the defaults below are theirs


@data_app.command("synth")
def data_synth(
    out: o.out("Folder to create."),
    products: Annotated[int, typer.Option(help="Number of products.")] = SynthConfig.products,
    views: Annotated[int, typer.Option(help="Images per product.")] = SynthConfig.views,
    seed: o.Seed = SynthConfig.seed,
    force: Annotated[bool, typer.Option(help="Replace a non-empty folder.")] = False,
) -> None:
    """Generate a Fashion-Gen-like synthetic catalogue (images, captions, splits, candidate lists)."""
    from fbinfer.data.synth import synthesize

    stats = synthesize(out, SynthConfig(products=products, views=views, seed=seed), force=force)
    console.print(f"wrote {out}: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in stats.items()))


@data_app.command("features")
def data_features(
    data: o.Data,
    config: Annotated[str, typer.Option(help="Model config whose patch input to compute.")] = FashionBertConfig.name,
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


def _weights(text: str) -> tuple[float, float, float]:
    try:
        return tuple(float(x) for x in text.split(","))  # type: ignore[return-value]
    except ValueError:
        raise FbinferError(f"--fixed-weights: {text!r} is not three comma-separated numbers") from None


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    data: o.Data,
    out: o.out("Checkpoint to write (model.pt)."),
    recipe: Annotated[str | None, typer.Option(help="Run a named recipe instead (teacher, teacher-short; README lists what each makes). "
                                                    "It sets every training option but --seed and --checkpoint-every.")] = None,
    resume: o.Resume = False,
    force: o.Force = False,
    config: Annotated[str, typer.Option(help="fashionbert-mini | fashionbert-mini-2l | fashionbert-demo | fashionbert-base | "
                                             "fashionbert-tiny")] = FashionBertConfig.name,
    init: Annotated[str | None, typer.Option(help="'minilm', a local BERT folder, or 'none' for random init.")] = None,
    layers: Annotated[int | None, typer.Option(help="Override the number of encoder layers.")] = None,
    patch_input: Annotated[str | None, typer.Option(help="features (CNN patch features) or pixels (raw-pixel patch embedding).")] = None,
    feature_layer: Annotated[str | None, typer.Option(help="EfficientNet-Lite0 layer: blocks (320-d) or head (1280-d).")] = None,
    steps: o.Steps = T.steps,
    epochs: o.Epochs = T.epochs,
    batch_size: o.BatchSize = T.batch_size,
    lr: o.Lr = T.lr,
    head_lr: o.HeadLr = T.head_lr,
    loss_weighting: Annotated[str, typer.Option(help="grad (paper), loss (released code) or fixed.")] = T.weighting,
    fixed_weights: Annotated[str, typer.Option(help="MLM,MPM,TIA weights for --loss-weighting fixed.")] = ",".join(f"{w:g}" for w in T.fixed_weights),
    tia_warmup_steps: Annotated[int, typer.Option(help="First steps: TIA only, random negatives, no masking, constant lr (a "
                                                       "curriculum; docs/training.md).")] = T.tia_warmup_steps,
    hard_ratio: o.HardRatio = T.hard_ratio,
    lists: o.Lists = T.lists,
    list_size: o.ListSize = T.list_size,
    start: Annotated[Path | None, typer.Option("--from", help="Fine-tune this FashionBERT checkpoint (its config and vocab; no "
                                                             "alignment or TIA warm-up).")] = None,
    mine_negatives: Annotated[Path | None, typer.Option(help="An embedding model (fbinfer embed train): the hard negatives become the "
                                                              "other products it ranks nearest each caption, what a reranker sees in its top-k.")] = None,
    mined_k: Annotated[int, typer.Option(help="With --mine-negatives: nearest products per caption to draw from.")] = T.mined_k,
    precision: o.TrainPrecision = T.precision,
    checkpoint_every: o.CheckpointEvery = T.checkpoint_every,
    seed: o.Seed = T.seed,
) -> None:
    """Pre-train FashionBERT (MLM + MPM + TIA with adaptive loss weights)."""
    from fbinfer.data.source import load_data
    from fbinfer.model.config import preset
    from fbinfer.training.trainer import train

    if recipe:
        return _train_recipe(ctx, recipe, data, out, seed, checkpoint_every, resume, force)
    cfg = preset(config, num_layers=layers, patch_input=patch_input, feature_layer=feature_layer)
    if init is not None:
        cfg = replace(cfg, init=None if init.lower() == "none" else init)
    train_cfg = TrainConfig(steps=steps, epochs=epochs if steps is None else None, batch_size=batch_size, lr=lr, head_lr=head_lr,
                     weighting=loss_weighting, fixed_weights=_weights(fixed_weights), checkpoint_every=checkpoint_every, seed=seed,
                     tia_warmup_steps=tia_warmup_steps, hard_ratio=hard_ratio, lists=lists, list_size=list_size,
                     start=str(start) if start else None, precision=precision,
                     mine_negatives=str(mine_negatives) if mine_negatives else None, mined_k=mined_k).validate()
    source = load_data(data)
    mined = None
    if mine_negatives is not None:
        from fbinfer.search.mining import mine_negatives as mine

        mined = mine(mine_negatives, source, source.train, mined_k)
    result = train(source, cfg, train_cfg, out, resume=resume, force=force, mined=mined)
    console.print(f"wrote {out} after {result.steps} steps in {result.seconds:.0f} s")


def _train_recipe(ctx: typer.Context, recipe: str, data: Path, out: Path, seed: int, checkpoint_every: int, resume: bool,
                  force: bool) -> None:
    from fbinfer.data.source import load_data
    from fbinfer.recipes import find_recipe, measured, train_recipe

    rec = find_recipe(recipe, "train")
    refuse_beside_recipe(ctx, recipe)
    console.print(rec.describe(recipe))
    source, began = load_data(data), time.perf_counter()
    train_recipe(rec, source, out, console, seed, checkpoint_every, resume, force)
    console.print(measured(f"recipe {recipe}", out, source, time.perf_counter() - began))


@app.command("distill")
def distill_cmd(
    ctx: typer.Context,
    teacher: Annotated[Path, typer.Argument(help="Teacher checkpoint (model.pt).")],
    out: o.out("Student checkpoint to write."),
    recipe: Annotated[str | None, typer.Option(help="Run a named recipe instead (student, student-int8; README lists what each makes). "
                                                    "It sets every distillation option but --seed, --checkpoint-every and the table's.")] = None,
    data: o.DataOr = None,
    layers: Annotated[int, typer.Option(help="Student encoder layers.")] = StudentSpec.layers,
    hidden: Annotated[int | None, typer.Option(help="Student width (default: the teacher's).")] = StudentSpec.hidden,
    heads: Annotated[int | None, typer.Option(help="Student attention heads (default: width / the teacher's head size).")] = StudentSpec.heads,
    init_layers: Annotated[str, typer.Option(help="Teacher layers the student starts as: uniform (TinyBERT's map) or first (the "
                                                  "paper's truncation).")] = StudentSpec.init_layers,
    steps: o.Steps = D.steps,
    epochs: o.Epochs = D.epochs,
    batch_size: o.BatchSize = D.batch_size,
    lr: o.Lr = D.lr,
    temperature: Annotated[float, typer.Option(help="Temperature of the TIA logit distillation.")] = D.temperature,
    weights: Annotated[str, typer.Option(help="Loss weights, e.g. 'kd=1,rank=1,hidden=1,attention=1,embedding=1,tia=1,mlm=0,mpm=0' "
                                              "(unnamed terms keep their defaults).")] = "",
    extra_negatives: Annotated[float, typer.Option(help="Extra same-sub-category negatives per batch, as a share of the batch.")] = D.extra_negatives,
    hard_ratio: o.HardRatio = D.hard_ratio,
    lists: o.Lists = D.lists,
    list_size: o.ListSize = D.list_size,
    dropout: Annotated[float | None, typer.Option(help="Student dropout (default: the teacher's).")] = D.dropout,
    precision: o.TrainPrecision = D.precision,
    quantize: Annotated[str | None, typer.Option(help="int8: quantization-aware distillation, INT8 fake quantization of the encoder's "
                                                      "Linear layers in the loop (NVIDIA Model Optimizer).")] = D.quantize,
    start: Annotated[Path | None, typer.Option("--from", help="Go on from this distilled student with a fresh schedule (its shape, layer "
                                               "map and projections; e.g. --quantize int8 as a short fine-tune).")] = None,
    checkpoint_every: o.CheckpointEvery = D.checkpoint_every,
    seed: o.Seed = D.seed,
    resume: o.Resume = False,
    compare: Annotated[bool, typer.Option(help="Finish with the teacher vs student table (Rank@K, parameters, pairs/s).")] = True,
    queries: o.Queries = None,
    json_out: o.JsonOut = None,
    force: o.Force = False,
) -> None:
    """Distil a teacher into a smaller FashionBERT (also under torchrun --nproc_per_node N)."""
    from fbinfer.data.source import load_data
    from fbinfer.model.checkpoint import load_checkpoint
    from fbinfer.recipes import measured
    from fbinfer.training.dist import is_main

    name, quantized, job = _distill_job(ctx)
    source, began = load_data(load_checkpoint(teacher).training_data(data)), time.perf_counter()
    result = job(data=source)
    if not is_main():
        return
    console.print(f"wrote {out}" + (f" after {result.steps} steps in {result.seconds:.0f} s (student layers started as teacher "
                                    f"layers {result.init_layers} and learned from teacher layers {result.loss_layers})" if result else ""))
    if compare:
        _compare(teacher, out, source, queries, json_out)
    console.print(measured(name, out, source, time.perf_counter() - began, teacher, quantized))


def _distill_job(ctx: typer.Context) -> tuple[str, bool, Callable]:
    """(what the run is called, whether it quantizes, the call that runs it on the data): a named
    recipe, or the command line's options as one run."""
    from fbinfer.distill.trainer import distill
    from fbinfer.recipes import distill_recipe, find_recipe

    p = ctx.params
    common = {"out": p["out"], "resume": p["resume"], "force": p["force"]}
    if p["recipe"]:
        rec = find_recipe(p["recipe"], "distill")
        refuse_beside_recipe(ctx, p["recipe"], also=("data", "compare", "queries", "json_out"))
        console.print(rec.describe(p["recipe"]))
        return (f"recipe {p['recipe']}", bool(rec.runs[-1].options.get("quantize")),
                partial(distill_recipe, rec, p["teacher"], console=console, seed=p["seed"], checkpoint_every=p["checkpoint_every"], **common))
    names = ("batch_size", "lr", "temperature", "extra_negatives", "hard_ratio", "lists", "list_size", "dropout", "checkpoint_every",
             "seed", "precision", "quantize")
    dc = DistillConfig(steps=p["steps"], epochs=p["epochs"] if p["steps"] is None else None, weights=LossWeights.parse(p["weights"]),
                       start=str(p["start"]) if p["start"] else None, **{n: p[n] for n in names}).validate()
    spec = StudentSpec(p["layers"], p["hidden"], p["heads"], p["init_layers"])
    return "distill", dc.quantize is not None, partial(distill, p["teacher"], spec=spec, dc=dc, **common)


def _compare(teacher: Path, student: Path, data, queries: int | None, json_out: Path | None) -> None:
    """The teacher vs student table (Rank@K, parameters, pairs/s), and its JSON."""
    from fbinfer.distill.compare import compare_table, measure, write_comparison

    r = measure({"teacher": teacher, student.name: student}, data, queries)
    console.print(compare_table(r["teacher"], {student.name: r[student.name]}))
    if json_out:
        write_comparison(json_out, r["teacher"], {student.name: r[student.name]})
        console.print(f"wrote {json_out}")


@app.command("eval")
def eval_cmd(
    model: Annotated[Path, typer.Argument(help="Checkpoint (model.pt).")],
    data: o.Data,
    json_out: o.JsonOut = None,
    queries: o.Queries = None,
    batch_size: o.BatchSize = 64,
) -> None:
    """Rank@1/5/10 both directions, TIA accuracy and AUC (the paper's protocol)."""
    from fbinfer.data.source import load_data
    from fbinfer.evaluation.run import run_eval

    run_eval(model, load_data(data), console, json_out, queries, batch_size)


@embed_app.command("train")
def embed_train_cmd(
    data: o.Data,
    out: o.out("Embedding model to write (embed.pt)."),
    teacher: Annotated[Path | None, typer.Option(help="A FashionBERT checkpoint: adds the KL towards its ranking of hard candidates.")] = None,
    steps: o.Steps = E.steps,
    epochs: o.Epochs = E.epochs,
    batch_size: Annotated[int, typer.Option(help="Items per step: two views of batch-size / 2 products.")] = E.batch_size,
    lr: o.Lr = E.lr,
    head_lr: o.HeadLr = E.head_lr,
    dim: Annotated[int, typer.Option(help="Size of the shared space.")] = EmbedConfig.dim,
    hard_ratio: Annotated[float, typer.Option(help="Share of products drawn with a partner from the same sub-category.")] = E.hard_ratio,
    product_weight: Annotated[float, typer.Option(help="Weight of the image+text (product) term.")] = E.product_weight,
    kd_weight: Annotated[float, typer.Option(help="Weight of the teacher term.")] = E.kd_weight,
    kd_temperature: Annotated[float, typer.Option(help="The teacher's softmax temperature.")] = E.kd_temperature,
    lists: o.Lists = E.lists,
    list_size: o.ListSize = E.list_size,
    precision: o.TrainPrecision = E.precision,
    checkpoint_every: o.CheckpointEvery = E.checkpoint_every,
    seed: o.Seed = E.seed,
    resume: o.Resume = False,
    force: o.Force = False,
    tiny: Annotated[bool, typer.Option(help="A 64-wide random text tower (tests and smoke runs).")] = EmbedConfig.tiny,
    image_size: Annotated[int, typer.Option(help="Image side the patch features are taken at; with --grid-size, the reranker's "
                                                 "(an index's features must be the ones its FashionBERT reads).")] = EmbedConfig.image_size,
    grid_size: Annotated[int, typer.Option(help="Patch grid side (grid x grid patch features).")] = EmbedConfig.grid_size,
    dropout: Annotated[float, typer.Option()] = EmbedConfig.dropout,
) -> None:
    """Train the dual encoder (text, image and image+text in one space) for catalogue recall."""
    from fbinfer.data.source import load_data
    from fbinfer.search.train import train_embed

    train_cfg = EmbedTrainConfig(steps=steps, epochs=epochs if steps is None else None, batch_size=batch_size, lr=lr, head_lr=head_lr,
                          hard_ratio=hard_ratio, product_weight=product_weight, teacher=str(teacher) if teacher else None,
                          kd_weight=kd_weight, kd_temperature=kd_temperature, lists=lists, list_size=list_size, precision=precision,
                          checkpoint_every=checkpoint_every, seed=seed).validate()
    cfg = EmbedConfig(dim=dim, tiny=tiny, dropout=dropout, image_size=image_size, grid_size=grid_size).validate()
    result = train_embed(load_data(data), cfg, train_cfg, out, resume=resume, force=force)
    console.print(f"wrote {out} after {result.steps} steps in {result.seconds:.0f} s")
