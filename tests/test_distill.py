"""fbinfer distill: each loss term on hand-made tensors, the layer map, the student's
initialisation, that distillation closes the teacher-student gap, the 2-process DDP run,
and bad input."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_cli_errors, run_cli, run_one_and_two_processes

from fbinfer.distill.losses import attention_kl, list_kd, masked_mse, relation_heads, tia_kd
from fbinfer.distill.student import StudentSpec, layer_map, make_student
from fbinfer.distill.trainer import DistillConfig, LossWeights, distill
from fbinfer.errors import FbinferError
from fbinfer.model.checkpoint import load_checkpoint
from fbinfer.training.dist import Dist


def test_tia_kd_is_a_binary_kl_times_t_squared():
    s, t = torch.tensor([0.0]), torch.tensor([math.log(3.0)])  # teacher p = 0.75 at T = 1
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert tia_kd(s, t, 1.0).item() == pytest.approx(expected, rel=1e-5)
    assert tia_kd(s, t * 2, 2.0).item() == pytest.approx(4 * expected, rel=1e-5)  # same p at T = 2, times T^2
    assert tia_kd(t, t, 3.0).item() == pytest.approx(0.0, abs=1e-7)


def test_list_kd_is_a_softmax_kl_over_each_list():
    t = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # teacher: (3/4, 1/4) and (1/2, 1/2)
    s = torch.zeros(2, 2)  # student: uniform
    expected = (0.75 * math.log(1.5) + 0.25 * math.log(0.5)) / 2  # the second list agrees
    assert list_kd(s, t, 1.0).item() == pytest.approx(expected, rel=1e-5)
    assert list_kd(s + 5.0, t - 1.0, 1.0).item() == pytest.approx(expected, rel=1e-5)  # only the order within a list counts
    assert list_kd(s, t * 2, 2.0).item() == pytest.approx(4 * expected, rel=1e-5)


def test_ranking_lists_put_the_truth_first_among_its_subcategory(tiny_data):
    from fbinfer.data.source import load_data
    from fbinfer.training.pairs import PairSampler

    items = load_data(tiny_data).train
    sampler = PairSampler(items, seed=0, batch_size=8)
    texts, images, labels = sampler.ranking_lists(step=3, count=6, size=3)
    assert len(texts) == len(images) == 18 and labels.tolist() == [1, 0, 0] * 6
    for g in range(6):
        t, m = texts[3 * g : 3 * g + 3], images[3 * g : 3 * g + 3]
        assert t[0].product_id == m[0].product_id  # the truth
        anchor_is_image = len({x.image for x in m}) == 1
        others = t[1:] if anchor_is_image else m[1:]
        assert len({x.product_id for x in others} | {t[0].product_id}) == 3  # distinct other products
        same_sub = [x for x in items if x.subcategory == t[0].subcategory]
        if len({x.product_id for x in same_sub}) >= 3:
            assert all(x.subcategory == t[0].subcategory for x in others)
    assert (texts, images) == sampler.ranking_lists(step=3, count=6, size=3)[:2]  # a pure function of (seed, step)


def test_shard_splits_pairs_and_whole_lists():
    from dataclasses import fields

    from fbinfer.training.objectives import PretrainBatch

    b = PretrainBatch(*(torch.arange(10) for _ in fields(PretrainBatch)))  # 4 pairs, then 2 lists of 3
    assert Dist(rank=0, world=2).shard(b, lists=2, list_size=3).labels.tolist() == [0, 2, 4, 5, 6]
    assert Dist(rank=1, world=2).shard(b, lists=2, list_size=3).labels.tolist() == [1, 3, 7, 8, 9]
    assert Dist().shard(b).labels.tolist() == list(range(10))


def test_masked_mse_ignores_padding():
    s = torch.tensor([[[1.0, 1.0], [5.0, 5.0]]])
    t = torch.tensor([[[0.0, 2.0], [0.0, 0.0]]])
    assert masked_mse(s, t, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(1.0)
    assert masked_mse(s, t, torch.tensor([[1.0, 1.0]])).item() == pytest.approx((1.0 + 25.0) / 2)
    two = masked_mse(torch.cat([s, s]), torch.cat([t, t]), torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    assert two.item() == pytest.approx((1.0 + 13.0) / 2)  # each pair weighs the same, whatever its length


def test_attention_kl_by_hand():
    keep = torch.tensor([[1.0, 1.0, 0.0]])
    k = torch.tensor([[[1.0], [0.0], [7.0]]])  # the third key is padding
    tq = torch.tensor([[[math.log(3.0)], [0.0], [0.0]]])  # query 0: attention (3/4, 1/4); query 1: (1/2, 1/2)
    sq = torch.zeros(1, 3, 1)  # the student attends uniformly
    expected = (0.75 * math.log(1.5) + 0.25 * math.log(0.5)) / 2  # query 1 agrees; the padded query is not counted
    assert attention_kl(sq, k, tq, k, keep, relation_heads=1).item() == pytest.approx(expected, rel=1e-5)
    assert attention_kl(tq, k, tq, k, keep, 1).item() == pytest.approx(0.0, abs=1e-7)
    k2 = k.clone()
    k2[0, 2] = -100.0  # changing a padding key changes nothing
    assert attention_kl(sq, k2, tq, k2, keep, 1).item() == pytest.approx(expected, rel=1e-5)


def test_relation_heads():
    assert relation_heads(12, 384, 384) == 12  # same shape: the real heads
    assert relation_heads(8, 384, 256) == 8  # 384 and 256 both split into 8
    assert relation_heads(5, 384, 320) == 1


def test_layer_map():
    assert layer_map(6, 2) == [2, 5]
    assert layer_map(6, 3) == [1, 3, 5]
    assert layer_map(6, 6) == list(range(6))
    assert layer_map(6, 2, "first") == [0, 1]


def test_full_size_student_is_the_teacher(tiny_model):
    ck = load_checkpoint(tiny_model)
    cfg = ck.config
    student, lmap, _ = make_student(ck, StudentSpec(layers=cfg.num_layers), [])
    ids = torch.randint(1000, 2000, (3, 7))
    mask = torch.ones_like(ids)
    patches = torch.randn(3, cfg.num_patches, cfg.patch_feature_dim)
    with torch.no_grad():
        assert torch.allclose(student.model(ids, mask, patches).logit, ck.model(ids, mask, patches).logit, atol=1e-6)
    assert lmap == list(range(cfg.num_layers))


def test_narrow_student_keeps_the_important_channels(tiny_model, tiny_data):
    from fbinfer.data.features import FeatureStore
    from fbinfer.data.source import load_data
    from fbinfer.training.pairs import PairSampler, make_batch

    ck = load_checkpoint(tiny_model)
    data = load_data(tiny_data)
    store = FeatureStore(data, ck.config).ensure(data.train)
    batch = make_batch(*PairSampler(data.train, 0, 8).pairs(0), ck.tokenizer(), store, torch.Generator().manual_seed(0), 0, 0)
    student, lmap, kept = make_student(ck, StudentSpec(layers=1, hidden=32), [batch])
    s, t = student.model.state_dict(), ck.model.state_dict()
    assert student.config.num_heads == 2 and student.config.intermediate_size == ck.config.intermediate_size // 2
    assert lmap == [1] and len(kept) == 32
    assert torch.equal(s["bert.embeddings.word_embeddings.weight"], t["bert.embeddings.word_embeddings.weight"][:, kept])
    assert torch.equal(s["bert.encoder.layer.0.attention.output.LayerNorm.weight"],
                       t["bert.encoder.layer.1.attention.output.LayerNorm.weight"][kept])
    assert torch.equal(s["bert.pooler.dense.weight"], t["bert.pooler.dense.weight"][kept][:, kept])


@pytest.mark.parametrize("spec, message", [
    (StudentSpec(layers=9), "--layers 9"),
    (StudentSpec(layers=1, hidden=128), "wider than the teacher"),
    (StudentSpec(layers=1, hidden=32, heads=4), "head size must stay"),
    (StudentSpec(layers=1, init_layers="last"), "--init-layers"),
])
def test_student_shape_errors(tiny_model, spec, message):
    with pytest.raises(FbinferError, match=message):
        spec.config(load_checkpoint(tiny_model).config)


def logit_gap(student_path: Path, teacher_path: Path, data_path: Path) -> float:
    from fbinfer.data.features import FeatureStore
    from fbinfer.data.source import load_data
    from fbinfer.training.pairs import PairSampler

    data = load_data(data_path)
    t, s = load_checkpoint(teacher_path), load_checkpoint(student_path)
    texts, images, _ = PairSampler(data.test, 5, 32, hard_ratio=1.0).pairs(0)
    batch = t.tokenizer()([x.text for x in texts]).as_torch()
    patches = FeatureStore(data, t.config).ensure(data.test).get(images)
    with torch.no_grad():
        a = t.model(batch.input_ids, batch.attention_mask, patches).logit
        b = s.model(batch.input_ids, batch.attention_mask, patches).logit
    return (a - b).abs().mean().item()


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_distillation_closes_the_logit_gap(tiny_model, tiny_data, tmp_path, precision):
    from fbinfer.data.source import load_data

    data = load_data(tiny_data)
    spec = StudentSpec(layers=1, hidden=32)
    weights = LossWeights(tia=0.0)  # learn from the teacher only
    before = tmp_path / "s0.pt"
    distill(tiny_model, data, spec, DistillConfig(steps=1, lr=1e-9, proj_lr=1e-9, weights=weights), before)
    after = tmp_path / "s.pt"
    result = distill(tiny_model, data, spec, DistillConfig(steps=80, lr=2e-3, batch_size=16, weights=weights, lists=2, list_size=4,
                                                           precision=precision), after)
    assert set(result.last) == {"kd", "rank", "hidden", "attention", "embedding"}
    gap0, gap1 = logit_gap(before, tiny_model, tiny_data), logit_gap(after, tiny_model, tiny_data)  # both scored in fp32
    assert gap1 < 0.5 * gap0, (gap0, gap1)
    rho0, rho1 = ranking_agreement(before, tiny_model, tiny_data), ranking_agreement(after, tiny_model, tiny_data)
    # the teacher's order, not only its mean, transfers (measured fp32: rho 0.08 -> 0.40; a constant student scores 0)
    assert rho1 > max(0.25, rho0 + 0.2), (rho0, rho1)
    student = load_checkpoint(after)
    assert student.meta["layer_map"] == [1] and student.meta["init_layers"] == [1] and student.meta["student"]["hidden"] == 32
    assert student.meta["distill"]["precision"] == precision
    assert {p.dtype for p in student.model.parameters()} == {torch.float32}  # bf16 is the forward pass's, not the weights'


def ranking_agreement(student_path: Path, teacher_path: Path, data_path: Path) -> float:
    """Mean Spearman's rho between student and teacher over the held-out candidate lists (test split)."""
    from fbinfer.backends.pytorch import TorchRunner
    from fbinfer.bench.drift import spearman
    from fbinfer.data.features import FeatureStore
    from fbinfer.data.source import load_data
    from fbinfer.export.parity import ParitySet

    data = load_data(data_path)
    t, s = load_checkpoint(teacher_path), load_checkpoint(student_path)
    pairs = ParitySet.from_data(data, FeatureStore(data, t.config).ensure(data.test), t.tokenizer(), queries=len(data.test))
    a, b = pairs.logits(TorchRunner(t.model), "teacher"), pairs.logits(TorchRunner(s.model), "student")
    return float(np.mean([spearman(a[q], b[q]) for q in pairs.queries]))


def test_interrupted_distillation_resumes_exactly(tiny_model, tiny_data, tmp_path, monkeypatch):
    """A run killed after its step-4 checkpoint and resumed ends where an uninterrupted run ends."""
    from fbinfer.data.source import load_data
    from fbinfer.distill import trainer

    data, spec = load_data(tiny_data), StudentSpec(layers=1, hidden=32)  # narrower: the projections are trained state too
    dc = DistillConfig(steps=8, batch_size=8, checkpoint_every=4, log_every=1, lists=2, list_size=4)
    full = distill(tiny_model, data, spec, dc, tmp_path / "full.pt")
    real, calls = trainer.make_batch, []

    def dying(*a, **k):  # 4 importance-probe batches, then one per step: dies in step 5
        calls.append(1)
        if len(calls) > 4 + 5:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(trainer, "make_batch", dying)
    with pytest.raises(KeyboardInterrupt):
        distill(tiny_model, data, spec, dc, tmp_path / "cut.pt")
    assert load_checkpoint(tmp_path / "cut.pt").meta["steps"] == 4
    monkeypatch.setattr(trainer, "make_batch", real)
    resumed = distill(tiny_model, data, spec, dc, tmp_path / "cut.pt", resume=True)
    assert resumed.last == pytest.approx(full.last, rel=1e-4)
    a, b = load_checkpoint(tmp_path / "full.pt"), load_checkpoint(tmp_path / "cut.pt")
    assert a.meta["steps"] == b.meta["steps"] == 8 and b.meta["resumed"][0]["at_step"] == 4
    for (k, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert (x - y).abs().max() < 1e-5, k


def losses_of(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_two_process_ddp_follows_the_single_process_run(tiny_model, tiny_data, tmp_path):
    """torchrun --nproc_per_node 2 (gloo, CPU) against one process with the same global batch."""
    common = ["distill", str(tiny_model), "--data", str(tiny_data), "--layers", "1", "--steps", "4", "--batch-size", "8",
              "--dropout", "0", "--lr", "1e-3", "--lists", "2", "--list-size", "4", "--no-compare"]
    run_one_and_two_processes(common, tmp_path / "one.pt", tmp_path / "two.pt")
    one, two = losses_of(tmp_path / "one.distill.jsonl"), losses_of(tmp_path / "two.distill.jsonl")
    assert [r["step"] for r in one] == [r["step"] for r in two] == [4]
    one_ck, two_ck = load_checkpoint(tmp_path / "one.pt"), load_checkpoint(tmp_path / "two.pt")
    assert two_ck.meta["world_size"] == 2
    for k in ("kd", "rank", "hidden", "attention", "embedding", "tia"):
        assert two[-1][k] == pytest.approx(one[-1][k], rel=1e-3, abs=1e-5), k
    one_w, two_w = one_ck.model.state_dict(), two_ck.model.state_dict()
    init = make_student(load_checkpoint(tiny_model), StudentSpec(layers=1), [])[0].model.state_dict()
    # After 4 synchronised steps both runs moved the student alike, relative to how far it moved
    # (float reductions differ, so not bit-equal; measured 2e-5 of the distance moved).
    moved = torch.cat([(one_w[k] - init[k]).flatten() for k in one_w])
    apart = torch.cat([(one_w[k] - two_w[k]).flatten() for k in one_w])
    assert apart.norm() < 1e-3 * moved.norm(), (apart.norm(), moved.norm())


def test_distill_cli_end_to_end_and_resume(tiny_model, tiny_data, tmp_path):
    out = tmp_path / "student.pt"
    r = run_cli("distill", str(tiny_model), "--data", str(tiny_data), "-o", str(out), "--layers", "1", "--steps", "2",
                "--batch-size", "8", "--queries", "4", "--json", str(tmp_path / "cmp.json"), env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 0, r.stderr[-2000:]
    cmp = json.loads((tmp_path / "cmp.json").read_text())
    # the table: its title, then a row per model with the figures of the JSON
    rows = {line.split("│")[1].strip(): line for line in r.stdout.splitlines() if line.count("│") > 4}
    assert "teacher vs students" in r.stdout and {"teacher", "student.pt"} <= set(rows)
    for name, res in (("teacher", cmp["teacher"]), ("student.pt", cmp["students"]["student.pt"])):
        assert f"{res['rank']['image_to_text']['rank1']:.1f}/" in rows[name] and f"{res['layers']}x{res['hidden']}" in rows[name]
    assert cmp["teacher"]["layers"] == 2 and cmp["students"]["student.pt"]["layers"] == 1
    # speeds come from this run, the two models timed in turns; only Rank@K is cached
    assert cmp["students"]["student.pt"]["timed"].startswith("in turns with teacher")
    cached = list((tiny_data / ".fbinfer" / "compare").glob("*.json"))
    assert cached and not any("pairs_per_s" in json.loads(c.read_text()) for c in cached)
    assert cmp["students"]["student.pt"]["parameters"] < cmp["teacher"]["parameters"]
    r = run_cli("distill", str(tiny_model), "--data", str(tiny_data), "-o", str(out), "--layers", "1", "--steps", "4",
                "--batch-size", "8", "--resume", "--no-compare")
    assert r.returncode == 0, r.stderr[-2000:]
    assert [x["step"] for x in losses_of(tmp_path / "student.distill.jsonl")] == [2, 4]
    meta = load_checkpoint(out).meta
    assert meta["steps"] == 4 and meta["resumed"] == [{"at_step": 2, "changed": {"steps": [2, 4]}}]


def test_distill_errors_are_one_line(tiny_model, tiny_data, tmp_path):
    import shutil

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    foreign = tmp_path / "foreign"
    shutil.copytree(tiny_data, foreign, ignore=shutil.ignore_patterns(".fbinfer"))
    for split in ("train.jsonl", "test.jsonl"):
        rows = [json.loads(line) for line in (foreign / split).read_text().splitlines()]
        (foreign / split).write_text("".join(json.dumps({**x, "text": "☃☄ ♞♜ ⛄"}) + "\n" for x in rows))
    base = ["--data", str(tiny_data), "--steps", "1", "--no-compare"]
    cases = [
        (["distill", str(junk), "-o", str(tmp_path / "a.pt"), *base], "not a readable FashionBERT checkpoint"),
        (["distill", str(tiny_model), "-o", str(tmp_path / "b.pt"), "--layers", "5", *base], "--layers 5"),
        (["distill", str(tiny_model), "-o", str(tmp_path / "c.pt"), "--hidden", "512", *base], "wider than the teacher"),
        (["distill", str(tiny_model), "-o", str(tmp_path / "d.pt"), "--weights", "kd=1,foo=2", *base], "unknown loss term"),
        (["distill", str(tiny_model), "-o", str(tmp_path / "f.pt"), "--precision", "fp16", *base], "--precision 'fp16'"),
        (["distill", str(tiny_model), "-o", str(tmp_path / "g.pt"), "--quantize", "int4", *base], "--quantize: choose from int8, not 'int4'"),
        (["distill", str(tiny_model), "-o", str(tmp_path / "h.pt"), "--from", str(tmp_path / "none.pt"), *base], "--from"),
        (["distill", str(tiny_model), "-o", str(tmp_path / "i.pt"), "--from", str(tiny_model), *base], "not a distilled student"),
        (["distill", str(tiny_model), "-o", str(tmp_path / "e.pt"), "--data", str(foreign), "--steps", "1"],
         "unknown to the teacher's vocab"),
    ]
    assert_cli_errors(cases)
    assert [p.name for p in tmp_path.glob("*.pt")] == ["junk.pt"]  # nothing written


def test_quantization_aware_distillation_has_int8_in_the_loop_and_resumes_exactly(tiny_model, tiny_data, tmp_path, monkeypatch):
    """``--quantize int8``: training with Model Optimizer's fake quantizers moves the weights
    elsewhere than the same run without (a no-op quantizer would not); the checkpoint is a plain
    FashionBERT; a run killed after its step-2 checkpoint and resumed, its quantizer ranges
    restored rather than calibrated again on the half-trained student, ends where the straight
    run ends."""
    from fbinfer.data.source import load_data
    from fbinfer.distill import trainer

    data, spec = load_data(tiny_data), StudentSpec(layers=1)
    common = {"steps": 4, "batch_size": 8, "checkpoint_every": 2, "extra_negatives": 0.0, "lr": 1e-3}
    distill(tiny_model, data, spec, DistillConfig(**common), tmp_path / "float.pt")
    dc = DistillConfig(quantize="int8", **common)
    distill(tiny_model, data, spec, dc, tmp_path / "qad.pt")
    real, calls = trainer.make_batch, []

    def dying(*a, **k):  # 4 importance-probe batches, 4 calibration batches, then one per step: dies in step 3
        calls.append(1)
        if len(calls) > 4 + 4 + 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(trainer, "make_batch", dying)
    with pytest.raises(KeyboardInterrupt):
        distill(tiny_model, data, spec, dc, tmp_path / "cut.pt")
    monkeypatch.setattr(trainer, "make_batch", real)
    distill(tiny_model, data, spec, dc, tmp_path / "cut.pt", resume=True)
    fp, qad_ck, cut = (load_checkpoint(tmp_path / f"{n}.pt") for n in ("float", "qad", "cut"))
    assert qad_ck.meta["quantized"]["layers"] == 6 and qad_ck.meta["quantized"]["precision"] == "int8"
    assert cut.meta["resumed"][0]["at_step"] == 2
    w = {n: ck.model.state_dict() for n, ck in (("float", fp), ("qad", qad_ck), ("cut", cut))}
    assert set(w["qad"]) == set(w["float"]), "the checkpoint holds a plain FashionBERT"
    moved = max(float((w["qad"][k] - w["float"][k]).abs().max()) for k in w["float"] if "encoder.layer" in k)
    assert moved > 1e-4, "training with INT8 fake quantization must differ from training without"
    for k in w["qad"]:
        assert float((w["qad"][k] - w["cut"][k]).abs().max()) < 1e-5, k


def test_fake_quantization_covers_the_encoder_linear_layers_only(tiny_model, tiny_data):
    from fbinfer.data.features import FeatureStore
    from fbinfer.data.source import load_data
    from fbinfer.distill import qad
    from fbinfer.training.pairs import PairSampler, make_batch

    ck, data = load_checkpoint(tiny_model), load_data(tiny_data)
    store = FeatureStore(data, ck.config).ensure(data.train)
    sampler = PairSampler(data.train, 0, 8)
    batches = [make_batch(*sampler.pairs(i), ck.tokenizer(), store, torch.Generator().manual_seed(i), 0.0, 0.0) for i in range(2)]
    b, model = batches[0], ck.model.eval()
    with torch.no_grad():
        before = model(b.input_ids, b.attention_mask, b.patches).logit
    layers = qad.fake_quantize(model, batches)
    assert len(layers) == 6 * ck.config.num_layers and all(".encoder.layer." in n for n in layers)
    with torch.no_grad():
        after = model(b.input_ids, b.attention_mask, b.patches).logit
        plain = qad.plain_copy(model)(b.input_ids, b.attention_mask, b.patches).logit
    assert float((after - before).abs().max()) > 1e-4, "the quantizers round"
    assert torch.equal(plain, before), "without its quantizers the model is the FP32 one"
