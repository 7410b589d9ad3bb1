"""Catalogue search commands: ``embed export``, ``index build|add``, ``search``, ``eval-retrieval``."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

import fbinfer.cli.options as o
from fbinfer.cli.app import app, console, embed_app, index_app
from fbinfer.errors import FbinferError
from fbinfer.search import index as catalog
from fbinfer.search.evaluate import RetrievalConfig as R  # the defaults below are its

Rerank = Annotated[Path | None, typer.Option(help="A FashionBERT bundle or checkpoint that rescores the dual encoder's top --depth.")]


@embed_app.command("export")
def embed_export_cmd(
    model: Annotated[Path, typer.Argument(help="Embedding model (embed.pt).")],
    out: o.out("Embedding bundle folder to write."),
    data: o.DataOr = None,
    force: Annotated[bool, typer.Option(help="Replace a bundle fbinfer made.")] = False,
) -> None:
    """Export the text, image and product towers as ONNX graphs, with parity against PyTorch per backend."""
    from fbinfer.data.source import load_data
    from fbinfer.search.checkpoint import load_embed
    from fbinfer.search.export import export_embed

    manifest = export_embed(model, load_data(load_embed(model).training_data(data)), out, force=force)
    for backend in ("onnxruntime", "openvino"):
        rows = [r for r in manifest["parity"] if r["backend"] == backend]
        console.print(f"{backend}: " + (", ".join(f"{r['graph']} max |diff| {r['max_abs_diff']:.1e}" for r in rows)
                                        or f"not checked here: {manifest.get('parity_skipped', {}).get(backend)}"))
    console.print(f"wrote {out}")


@index_app.command("build")
def index_build_cmd(
    data: o.Data,
    out: o.out("Index folder to write (catalog.index)."),
    model: Annotated[Path, typer.Option("--model", help="Embedding model (embed.pt) or embedding bundle.")],
    kind: Annotated[str, typer.Option(help="auto (exact for small catalogues, HNSW above), flat, hnsw or ivfpq.")] = catalog.KINDS[0],
    split: Annotated[str, typer.Option(help="Which items: all, train or test (eval-retrieval wants test).")] = catalog.SPLITS[0],
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
    data: o.Data,
    split: Annotated[str, typer.Option(help="all, train or test.")] = catalog.SPLITS[0],
) -> None:
    """Embed more items with the index's own model and add them (the folder is replaced whole)."""
    from fbinfer.data.source import load_data
    from fbinfer.search.index import add_to_index

    meta = add_to_index(index, load_data(data), split)
    console.print(f"{index}: now {meta['count']} items")


@app.command("search")
def search_cmd(
    index: Annotated[Path, typer.Argument(help="Index folder.")],
    text: Annotated[str | None, typer.Argument(help="A caption query.")] = None,
    image: Annotated[Path | None, typer.Option("--image", help="An image query (with a text query: image+text, same style).")] = None,
    k: Annotated[int, typer.Option("--k", help="Results to show.")] = catalog.K,
    target: Annotated[str | None, typer.Option(help="image, text (captions) or product; default image, or product for text + image.")] = None,
    rerank: Rerank = None,
    depth: Annotated[int, typer.Option(help="Candidates the reranker scores.")] = catalog.DEPTH,
    backend: o.Backend = None,
    precision: o.Precision = None,
    hints: o.Hints = "",
) -> None:
    """Search a catalogue by caption, image or both; optionally rerank with FashionBERT."""
    from fbinfer.search.index import CatalogIndex
    from fbinfer.search.report import hits_table

    idx = CatalogIndex(index)
    matcher = o.reranker(rerank, backend, precision, hints)
    hits = idx.search(text=text, image=image, k=k, target=target, rerank=matcher, depth=depth)
    console.print(hits_table(hits, f"{len(hits)} of {len(idx)} items" + (f", reranked by {matcher.backend} at depth {depth}" if matcher else "")))


@app.command("eval-retrieval")
def eval_retrieval_cmd(
    index: Annotated[Path, typer.Option("--index", help="An index of the test catalogue (fbinfer index build --split test).")],
    rerank: Rerank = None,
    depths: Annotated[str, typer.Option(help="Rerank depths.")] = ",".join(map(str, R.depths)),
    full_queries: Annotated[int, typer.Option(help="Queries per direction the cross-encoder scores against every item (0: skip).")] = R.full_queries,
    latency_queries: Annotated[int, typer.Option(help="Queries per direction and system timed one by one.")] = R.latency_queries,
    backend: o.Backend = None,
    precision: o.Precision = None,
    hints: o.Hints = "",
    json_out: o.JsonOut = None,
    plot: Annotated[Path | None, typer.Option(help="PNG: Rank@1 against depth and against cost.", callback=o.writable("--plot"))] = None,
    fusion_index: Annotated[Path | None, typer.Option(help="An index of a validation catalogue (never the test one, same embedding model): "
                                                            "fit the weight of FashionBERT's logit against the dual encoder's cosine there "
                                                            "and add the fused two-stage rows.")] = None,
) -> None:
    """Full-catalogue retrieval, both directions: dual encoder, two-stage at each depth (and fused), cross-encoder alone."""
    from fbinfer.fileio import write_json
    from fbinfer.search.evaluate import evaluate_retrieval, plot_retrieval
    from fbinfer.search.index import CatalogIndex
    from fbinfer.search.report import retrieval_tables

    cfg = R(o.ints(depths, "--depths"), full_queries, latency_queries)
    idx = CatalogIndex(index)
    if fusion_index is not None and Path(fusion_index).resolve() == Path(index).resolve():
        raise FbinferError(f"--fusion-index {fusion_index}: the weights must be fitted on another catalogue than the one evaluated")
    fit_on = CatalogIndex(fusion_index, idx.embedder) if fusion_index is not None else None
    result = evaluate_retrieval(idx, o.reranker(rerank, backend, precision, hints), cfg, fit_on)
    retrieval_tables(result, console)
    if json_out:
        write_json(json_out, result)
    if plot and rerank:
        plot_retrieval(result, plot)
