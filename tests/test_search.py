"""Catalogue search: the dual encoder's losses and training (resume, torchrun), its export parity,
the faiss index (exact = brute force, add, memory-mapped load, model identity, Ray), reranking
(at full depth it is the cross-encoder's own ranking), eval-retrieval, and bad input."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_cli_errors, run_cli, run_cli_here, run_one_and_two_processes

from fbinfer.bundle import Bundle
from fbinfer.data.source import load_data
from fbinfer.errors import FbinferError
from fbinfer.fileio import sha256
from fbinfer.runtime.load import load
from fbinfer.search.checkpoint import load_embed
from fbinfer.search.config import EmbedConfig
from fbinfer.search.embedder import open_embedder
from fbinfer.search.evaluate import MISS, RetrievalConfig, evaluate_retrieval, first_hit, summarize
from fbinfer.search.index import CatalogIndex, add_to_index, build_index
from fbinfer.search.losses import multi_positive_nce, ranking_kl, symmetric_nce
from fbinfer.search.train import EmbedTrainConfig, ProductBatches, train_embed

TINY = EmbedConfig(tiny=True, dropout=0.0)


@pytest.fixture(scope="module")
def embed_bundle(embed_model, tiny_data, tmp_path_factory):
    from fbinfer.search.export import export_embed

    out = tmp_path_factory.mktemp("ebundle") / "embed.bundle"
    export_embed(embed_model, load_data(tiny_data), out, samples=16)
    return out


def test_nce_known_answers():
    # two rows, positives on the diagonal: -log(e^a / (e^a + e^b))
    logits = torch.tensor([[2.0, 0.0], [1.0, 3.0]])
    eye = torch.eye(2, dtype=torch.bool)
    want = (-np.log(np.exp(2) / (np.exp(2) + 1)) - np.log(np.exp(3) / (np.exp(3) + np.exp(1)))) / 2
    assert multi_positive_nce(logits, eye).item() == pytest.approx(want, rel=1e-6)
    # a second positive in the row adds its mass to the numerator: both positive -> loss 0
    assert multi_positive_nce(logits, torch.ones(2, 2, dtype=torch.bool)).item() == pytest.approx(0.0, abs=1e-6)
    a = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    assert symmetric_nce(a, a, torch.tensor(50.0), torch.eye(4, dtype=torch.bool)) < 0.05  # perfectly aligned pairs
    assert symmetric_nce(a, a.flip(0), torch.tensor(50.0), torch.eye(4, dtype=torch.bool)) > 5
    # KL is zero for the same ranking distribution, positive otherwise
    t = torch.tensor([[3.0, 1.0, 0.0]])
    assert ranking_kl(t, t, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert ranking_kl(t.flip(1), t, 1.0).item() > 1.0


def test_product_batches_pair_products_of_one_subcategory(tiny_data):
    d = load_data(tiny_data)
    pb = ProductBatches(d.train, seed=0, products=8, hard_ratio=1.0)
    chosen = pb.products_of(3)
    assert chosen == pb.products_of(3) and len(chosen) == 8  # a pure function of the step
    subs = [d.train[pb.products[p][0]].subcategory for p in chosen]
    assert all(subs[i] == subs[i + 1] for i in range(0, 8, 2))  # anchor, partner from its sub-category
    a, b = pb.views(chosen[0], np.random.default_rng(0))
    assert a.product_id == b.product_id and a.image != b.image  # two views of one product


def test_training_learns_to_match(embed_model, tiny_data):
    """After 30 steps the tiny dual encoder matches captions to images far above chance on its training items."""
    d = load_data(tiny_data)
    emb = open_embedder(embed_model)
    from fbinfer.data.features import FeatureStore

    items = d.train[:32]
    feats = FeatureStore(d, emb.config.feature_config()).ensure(items).get(items).numpy()
    sims = emb.texts([it.text for it in items]) @ emb.images(feats).T
    hit = [items[int(np.argmax(s))].product_id == it.product_id for s, it in zip(sims, items)]
    assert np.mean(hit) > 0.3, np.mean(hit)  # chance: about 2 / 32
    log = [json.loads(line) for line in embed_model.with_name("embed.embed.jsonl").read_text().splitlines()]
    assert log[-1]["nce"] < log[0]["nce"]


def test_interrupted_training_resumes_to_the_same_weights(tiny_data, tmp_path, monkeypatch):
    """A run killed after its step-2 checkpoint and resumed ends where an uninterrupted run ends (dropout on)."""
    from fbinfer.search import train as trainer

    d, cfg = load_data(tiny_data), EmbedConfig(tiny=True)
    tc = EmbedTrainConfig(steps=4, batch_size=8, checkpoint_every=2, log_every=1)
    full = train_embed(d, cfg, tc, tmp_path / "full.pt")
    real, calls = trainer.ProductBatches.products_of, []

    def dying(self, step):
        calls.append(step)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return real(self, step)

    monkeypatch.setattr(trainer.ProductBatches, "products_of", dying)
    with pytest.raises(KeyboardInterrupt):
        train_embed(d, cfg, tc, tmp_path / "cut.pt")
    assert load_embed(tmp_path / "cut.pt").meta["steps"] == 2
    monkeypatch.setattr(trainer.ProductBatches, "products_of", real)
    resumed = train_embed(d, cfg, tc, tmp_path / "cut.pt", resume=True)
    assert resumed.last["nce"] == pytest.approx(full.last["nce"], rel=1e-4)
    a, b = load_embed(tmp_path / "full.pt").model.state_dict(), load_embed(tmp_path / "cut.pt").model.state_dict()
    for k in a:
        assert (a[k] - b[k]).abs().max() < 1e-5, k


def test_exact_search_equals_brute_force(test_index):
    idx = CatalogIndex(test_index)
    emb = idx.embedder
    image = emb.images(idx.patches[[it["patch_row"] for it in idx.items]].astype(np.float32))
    q = emb.texts([it["text"] for it in idx.items[:5]])
    scores, rows = idx.search_vectors("image", q, k=len(idx))
    brute = q @ image.T
    assert np.array_equal(rows, np.argsort(-brute, axis=1, kind="stable")) or np.allclose(np.take_along_axis(brute, rows, 1), scores, atol=1e-5)
    np.testing.assert_allclose(scores, -np.sort(-brute, axis=1), atol=1e-5)
    assert rows[:, 0].tolist() == np.argmax(brute, axis=1).tolist()


def test_two_stage_at_full_depth_is_the_cross_encoders_ranking(test_index, tiny_model):
    idx, matcher = CatalogIndex(test_index), load(tiny_model)
    n = len(idx)
    feats = idx.patches[[it["patch_row"] for it in idx.items]].astype(np.float32)
    for query in (idx.items[0]["text"], idx.items[5]["text"]):
        hits = idx.search(text=query, k=n, rerank=matcher, depth=n)
        cross = np.argsort(-matcher.score([query] * n, feats), kind="stable")
        assert [h.row for h in hits] == cross.tolist()
        dual = [h.row for h in idx.search(text=query, k=n)]
        assert dual != cross.tolist()  # otherwise the check above proves nothing about reranking
    # the same through eval-retrieval: two-stage at depth n equals the cross-encoder alone on every query
    res = evaluate_retrieval(idx, matcher, RetrievalConfig(depths=(n,), full_queries=n, latency_queries=1))
    for direction in ("text_to_image", "image_to_text"):
        r = res[direction]
        assert r["on_cross_encoder_queries"][f"two_stage@{n}"]["rank1"] == r["cross_encoder"]["rank1"]
        assert r["cross_encoder"]["queries"] == r["dual"]["queries"]


def test_fusion_weight_follows_a_reranker_that_helps_and_ignores_one_that_hurts():
    """Three queries whose truth (row 1) the dual encoder puts second by a little: a reranker that
    prefers the truth gets a weight that fixes all three; the same reranker reversed gets weight 0
    (the fusion is then the dual encoder alone, never worse than it on the fitting catalogue)."""
    from fbinfer.search.evaluate import Stages, best_weight

    dual = np.tile([0.9, 0.85, 0.1], (3, 1))
    rows = np.tile([0, 1, 2], (3, 1))
    truth = [{1}] * 3
    helps = Stages(dual, rows, [np.array([0.0, 5.0, -5.0])] * 3)
    w = best_weight(helps, truth, 3)
    assert w > 0 and helps.ranks(truth, 3, w) == [0, 0, 0] and helps.ranks(truth, 3, 0.0) == [1, 1, 1]
    hurts = Stages(dual, rows, [np.array([0.0, -5.0, 5.0])] * 3)
    assert best_weight(hurts, truth, 3) == 0.0 and hurts.ranks(truth, 3) == [2, 2, 2]  # reranked alone: worst


def test_mined_negatives_are_the_dual_encoders_nearest_other_products(embed_model, tiny_data):
    """Each caption's mined negatives: other products only, in the order of the dual encoder's
    caption -> image cosine (checked by brute force), and the sampler's hard negatives come from them."""
    from fbinfer.data.features import FeatureStore
    from fbinfer.search.embedder import embed_items
    from fbinfer.search.mining import mine_negatives
    from fbinfer.training.pairs import PairSampler

    data = load_data(tiny_data)
    items = data.train
    mined = mine_negatives(embed_model, data, items, k=5)
    emb = open_embedder(embed_model)
    vec = embed_items(emb, [it.text for it in items], FeatureStore(data, emb.config.feature_config()).ensure(items).get(items).numpy())
    for i in (0, 7, len(items) - 1):
        others = [j for j in range(len(items)) if items[j].product_id != items[i].product_id]
        sims = vec["text"][i] @ vec["image"][others].T
        assert mined[i] == [others[j] for j in np.argsort(-sims, kind="stable")[:5]]
    sampler = PairSampler(items, 0, 8, hard_ratio=1.0, mined=mined)
    rng = np.random.default_rng(0)
    assert all(sampler.negative(i, rng) in mined[i] for i in range(len(items)))


def test_rank_metrics_known_answers():
    assert first_hit(np.array([4, 2, 7]), {7}) == 2 and first_hit(np.array([4, 2]), {7}) == MISS
    s = summarize([0, 2, 7, MISS], pairs=16, depths=(4,))
    assert (s["rank1"], s["rank5"], s["rank10"], s["recall@4"]) == (25.0, 50.0, 75.0, 50.0)


def test_add_then_search_finds_the_added_item(embed_model, tiny_data, tmp_path):
    d = load_data(tiny_data)
    out = tmp_path / "c.index"
    build_index(embed_model, d, out, kind="flat", split="test")
    before = CatalogIndex(out)
    assert not any(it["product_id"] == d.train[0].product_id for it in before.items)
    add_to_index(out, d, split="train")
    idx = CatalogIndex(out)
    assert len(idx) == len(d.test) + len(d.train) and json.loads((out / "index.json").read_text())["added"][0]["items"] == len(d.train)
    feats = np.asarray(idx.patches[idx.items[len(d.test)]["patch_row"]], dtype=np.float32)
    hits = idx.search(image=feats, k=1)  # an added item's own image finds itself
    assert hits[0].row == len(d.test) and hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_add_to_an_index_whose_items_share_patch_rows(embed_model, tiny_data, tmp_path):
    """A catalogue grown from copies (benchmarks/search_scale.py: many items, one patch row): the
    added items' features go after the last row, not after the item count (which broke on a
    100,000-item index with 2,400 rows)."""
    from fbinfer.search.embedder import TARGETS
    from fbinfer.search.index import write_index

    d = load_data(tiny_data)
    base = tmp_path / "base.index"
    build_index(embed_model, d, base, kind="flat", split="test")
    idx = CatalogIndex(base)
    n = len(idx)
    vectors = {t: np.concatenate([idx.indexes[t].reconstruct_n(0, n)] * 3) for t in TARGETS}
    meta = {k: idx.meta[k] for k in ("model", "model_sha256", "dim", "feature_key", "vocab_sha256")}
    grown = tmp_path / "grown.index"
    write_index(grown, meta, idx.items * 3, vectors, np.asarray(idx.patches), "flat")  # 3n items on n patch rows
    add_to_index(grown, d, split="train")
    g = CatalogIndex(grown)
    assert len(g) == 3 * n + len(d.train) and len(g.patches) == n + len(d.train)
    row = 3 * n + 5  # an added item: its own features find it
    assert g.search(image=g.item_patches([row])[0], k=1)[0].row == row


def test_index_kinds_and_memory_mapped_load(embed_model, tiny_data, tmp_path):
    d = load_data(tiny_data)
    build_index(embed_model, d, tmp_path / "h.index", kind="hnsw", split="all")
    idx = CatalogIndex(tmp_path / "h.index")
    assert idx.meta["faiss"]["image"] == "IndexHNSWFlat" and isinstance(idx.patches, np.memmap)
    with pytest.raises(FbinferError, match="too few to train"):
        build_index(embed_model, d, tmp_path / "p.index", kind="ivfpq", split="test")
    assert not (tmp_path / "p.index").exists()  # nothing half-written


def test_model_mismatch_is_refused(test_index, tiny_data, tmp_path):
    other = tmp_path / "other.pt"
    train_embed(load_data(tiny_data), TINY, EmbedTrainConfig(steps=1, batch_size=8, seed=1), other)
    with pytest.raises(FbinferError, match="built with embedding model"):
        CatalogIndex(test_index, open_embedder(other))


def test_export_parity_and_search_with_the_bundle(embed_model, embed_bundle, tiny_data, test_index):
    man = json.loads((embed_bundle / "manifest.json").read_text())
    rows = {(r["graph"], r["backend"]): r["max_abs_diff"] for r in man["parity"]}
    assert man["format"] == "fbinfer.bundle" and man["model"] == "embed" and man["source"]["sha256"] == sha256(embed_model)
    assert set(rows) == {(f"{t}.fp32", b) for t in ("text", "image", "product") for b in ("onnxruntime", "openvino")}
    assert max(rows.values()) < 1e-4
    with pytest.raises(FbinferError, match="a bundle of an embedding model .*, where a FashionBERT model is needed"):
        Bundle.open(embed_bundle)
    bundle = open_embedder(embed_bundle)
    ref = open_embedder(embed_model)
    texts = [it.text for it in load_data(tiny_data).test[:6]]
    np.testing.assert_allclose(bundle.texts(texts), ref.texts(texts), atol=1e-4)
    assert bundle.identity == ref.identity  # the bundle searches an index the checkpoint built
    idx = CatalogIndex(test_index, bundle)
    assert [h.row for h in idx.search(text=texts[0], k=3)] == [h.row for h in CatalogIndex(test_index).search(text=texts[0], k=3)]


@pytest.mark.parametrize("damage", ["truncate", "flip", "swap"])
def test_a_damaged_embedding_bundle_file_is_refused(embed_bundle, tmp_path, damage):
    """The embedding bundle is checked as every bundle is: a tower graph cut short (its size), changed
    in place or swapped for another tower's graph (its sha256) is one line naming the file."""
    folder = tmp_path / "embed.bundle"
    shutil.copytree(embed_bundle, folder)
    graph = folder / "text.fp32.onnx"
    data = graph.read_bytes()
    if damage == "truncate":
        graph.write_bytes(data[:-100])
    elif damage == "flip":
        graph.write_bytes(data[:-50] + bytes(b ^ 0xFF for b in data[-50:-42]) + data[-42:])
    else:
        graph.write_bytes((folder / "image.fp32.onnx").read_bytes()[:len(data)].ljust(len(data), b"\0"))
    message = "bytes, the manifest recorded" if damage == "truncate" else "sha256 does not match the manifest"
    with pytest.raises(FbinferError, match=rf"{graph}: .*{message}"):
        open_embedder(folder)


def test_ray_embedding_equals_the_single_process_path(embed_bundle, tiny_data, tmp_path):
    """The bundle's graphs in the actors (no torch to import there: the actors start faster)."""
    pytest.importorskip("ray")
    for name, ray in (("one.index", False), ("ray.index", True)):
        build_index(embed_bundle, load_data(tiny_data), tmp_path / name, kind="flat", split="test", use_ray=ray)
    a, b = CatalogIndex(tmp_path / "one.index"), CatalogIndex(tmp_path / "ray.index")
    for t in ("image", "text", "product"):
        np.testing.assert_allclose(a.indexes[t].reconstruct_n(0, len(a)), b.indexes[t].reconstruct_n(0, len(b)), atol=1e-6)


def test_search_cli_end_to_end(tiny_data, tiny_model, tmp_path):
    """embed train, index build, search (reranked), eval-retrieval: the commands a user runs."""
    env = {**os.environ, "COLUMNS": "200"}
    steps = [("embed", "train", "--data", str(tiny_data), "-o", str(tmp_path / "e.pt"), "--tiny", "--steps", "4", "--batch-size", "8"),
             ("index", "build", "--data", str(tiny_data), "-o", str(tmp_path / "c.index"), "--model", str(tmp_path / "e.pt"),
              "--split", "test"),
             ("index", "build", "--data", str(tiny_data), "-o", str(tmp_path / "v.index"), "--model", str(tmp_path / "e.pt"),
              "--split", "train")]  # stands in for a validation catalogue: the fusion weights are fitted there
    for args in steps:
        r = run_cli(*args, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
    # search and eval-retrieval through the CLI's main in this interpreter (the start-up is paid above)
    r = run_cli_here("search", str(tmp_path / "c.index"), "red striped t-shirt", "--k", "3", "--rerank", str(tiny_model), "--depth", "8")
    ranks = [line.split("│")[1].strip() for line in r.stdout.splitlines() if line.startswith("│") and line.split("│")[1].strip()]
    assert r.returncode == 0 and "reranked by torch" in r.stdout and ranks == ["1", "2", "3"], r.stdout + r.stderr[-2000:]
    r = run_cli_here("eval-retrieval", "--index", str(tmp_path / "c.index"), "--rerank", str(tiny_model), "--depths", "4,8",
                "--full-queries", "3", "--latency-queries", "2", "--json", str(tmp_path / "r.json"), "--plot", str(tmp_path / "r.png"),
                "--fusion-index", str(tmp_path / "v.index"))
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "r.json").read_text())
    assert set(res["text_to_image"]) == {"dual", "two_stage@4", "two_stage@8", "fused@4", "fused@8", "cross_encoder", "on_cross_encoder_queries"}
    assert res["fusion"]["weights"]["text_to_image"]["8"] == res["text_to_image"]["fused@8"]["weight"] and "logit weight" in r.stdout
    assert res["text_to_image"]["two_stage@8"]["pairs_per_query"] == 8 and res["catalogue"] == len(load_data(tiny_data).test)
    assert "text to image" in r.stdout and (tmp_path / "r.png").stat().st_size > 1000


def test_search_bad_input_is_one_line(test_index, tiny_model, tiny_data, embed_model, tmp_path):
    broken = tmp_path / "broken.index"
    shutil.copytree(test_index, broken)
    (broken / "text.faiss").write_bytes(b"not faiss")
    partial = tmp_path / "partial.index"
    shutil.copytree(test_index, partial)
    (partial / "image.faiss").unlink()
    other = tmp_path / "other.index"
    shutil.copytree(test_index, other)
    meta = json.loads((other / "index.json").read_text())
    (other / "index.json").write_text(json.dumps({**meta, "model_sha256": "0" * 64}))
    foreign_vocab = tmp_path / "vocab.index"
    shutil.copytree(test_index, foreign_vocab)
    (foreign_vocab / "index.json").write_text(json.dumps({**meta, "vocab_sha256": "1" * 64}))
    foreign_feat = tmp_path / "feat.index"
    shutil.copytree(test_index, foreign_feat)
    (foreign_feat / "index.json").write_text(json.dumps({**meta, "feature_key": "pixels-256-g8"}))
    short = tmp_path / "short.index"  # the reported case: a shorter patches.npy ended search --rerank in an IndexError
    shutil.copytree(test_index, short)
    np.save(short / "patches.npy", np.load(short / "patches.npy")[:-3])
    idx = str(test_index)
    assert_cli_errors([
        (["search", str(short), "boots", "--rerank", str(tiny_model)], "patches.npy: "),
        (["search", idx, "  "], "the text query is empty"),
        (["search", idx], "give a text query"),
        (["search", str(tmp_path / "none.index"), "boots"], "no such index"),
        (["search", str(broken), "boots"], "text.faiss: 9 bytes"),
        (["search", str(partial), "boots"], "image.faiss: missing"),
        (["search", str(other), "boots"], "built with embedding model"),
        (["search", idx, "boots", "--k", "10", "--depth", "5", "--rerank", str(tiny_model)], "--depth 5 is smaller than --k 10"),
        (["search", str(foreign_vocab), "boots", "--rerank", str(tiny_model)], "its vocabulary differs"),
        (["search", str(foreign_feat), "boots", "--rerank", str(tiny_model)], "features"),
        (["index", "build", "--data", str(tiny_data), "-o", str(tmp_path / "x.index"), "--model", str(tiny_model)],
         "not an fbinfer embedding model"),
        (["index", "build", "--data", str(tiny_data), "-o", str(tmp_path / "x.index"), "--model", str(embed_model), "--kind", "lsh"],
         "--kind 'lsh'"),
        (["embed", "train", "--data", str(tiny_data), "-o", str(tmp_path / "e.pt"), "--batch-size", "5"], "--batch-size 5"),
        (["eval-retrieval", "--index", idx, "--depths", "8,x"], "--depths"),
    ])
    assert not (tmp_path / "x.index").exists() and not (tmp_path / "e.pt").exists()


@pytest.fixture(scope="module")
def other_index(embed_model, tiny_data, tmp_path_factory):
    """Another valid index of the same model (the train split): its files replace the test index's."""
    out = tmp_path_factory.mktemp("other") / "train.index"
    build_index(embed_model, load_data(tiny_data), out, kind="flat", split="train")
    return out


def _shorten(path, other):
    if path.suffix == ".npy":
        np.save(path, np.load(path)[:-1])
    elif path.suffix == ".jsonl":
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    else:  # a faiss index of one vector fewer
        import faiss

        ix = faiss.read_index(str(path))
        short = faiss.IndexFlatIP(ix.d)
        short.add(ix.reconstruct_n(0, ix.ntotal - 1))
        faiss.write_index(short, str(path))


def _flip(path, other):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte in place: the size stays
    path.write_bytes(bytes(data))


DAMAGE = {"truncate": lambda path, other: path.write_bytes(path.read_bytes()[: path.stat().st_size // 2]),
          "shorten": _shorten, "flip": _flip,
          "replace": lambda path, other: shutil.copyfile(other / path.name, path)}


@pytest.mark.parametrize("name", ["items.jsonl", "patches.npy", "image.faiss"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_index_file_is_refused_before_anything_parses_it(test_index, other_index, tmp_path, monkeypatch, name, damage):
    """Every kind of damage to every kind of file is one error naming the file, raised before faiss
    or numpy reads it (both are made to fail the test if called)."""
    import faiss

    folder = tmp_path / "damaged.index"
    shutil.copytree(test_index, folder)
    DAMAGE[damage](folder / name, other_index)
    monkeypatch.setenv("FBINFER_VERIFY_CACHE", "0")

    def parsed(*a, **k):
        raise AssertionError(f"parsed before its hash was checked: {a[:1]}")

    monkeypatch.setattr(faiss, "read_index", parsed)
    monkeypatch.setattr(np, "load", parsed)
    with pytest.raises(FbinferError, match=rf"{name}: (\d+ bytes|sha256)") as e:
        CatalogIndex(folder)
    assert "\n" not in str(e.value)


def test_verified_files_are_not_hashed_again_until_they_change(test_index, tmp_path, monkeypatch):
    from fbinfer import verify

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "c.index"
    shutil.copytree(test_index, folder)
    calls = []
    real = verify.sha256
    monkeypatch.setattr(verify, "sha256", lambda p: calls.append(Path(p).name) or real(p))
    CatalogIndex(folder)
    assert sorted(calls) == sorted(["items.jsonl", "patches.npy", "image.faiss", "text.faiss", "product.faiss"])
    calls.clear()
    CatalogIndex(folder)
    assert calls == []  # unchanged: the cache answers
    _flip(folder / "patches.npy", None)  # rewritten in place: a new mtime, hashed again, refused
    with pytest.raises(FbinferError, match="patches.npy: sha256"):
        CatalogIndex(folder)


@pytest.mark.slow
def test_two_process_ddp_follows_the_single_process_run(tiny_data, tmp_path):
    """torchrun --nproc_per_node 2 (gloo, CPU) against one process with the same global batch."""
    common = ["embed", "train", "--data", str(tiny_data), "--tiny", "--dropout", "0", "--steps", "3", "--batch-size", "8",
              "--head-lr", "1e-3"]
    run_one_and_two_processes(common, tmp_path / "one.pt", tmp_path / "two.pt")
    one, two = load_embed(tmp_path / "one.pt"), load_embed(tmp_path / "two.pt")
    assert two.meta["world_size"] == 2
    from fbinfer.search.train import new_embed_model

    init = new_embed_model(TINY, 0)[0].state_dict()
    a, b = one.model.state_dict(), two.model.state_dict()
    moved = torch.cat([(a[k] - init[k]).flatten() for k in a])
    apart = torch.cat([(a[k] - b[k]).flatten() for k in a])
    assert apart.norm() < 1e-3 * moved.norm(), (apart.norm(), moved.norm())
