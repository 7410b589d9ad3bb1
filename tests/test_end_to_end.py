"""The CLI path a user types: synth -> train -> eval, plus resume and the error paths."""
import json

import pytest
import torch
from helpers import assert_cli_errors, assert_one_line_error
from helpers import run_cli as fbinfer

from fbinfer.data.features import FeatureStore
from fbinfer.data.source import load_data
from fbinfer.errors import FbinferError
from fbinfer.evaluation.evaluate import evaluate, torch_scorer
from fbinfer.model.checkpoint import load_checkpoint


def ranks_by_hand(ck, data) -> dict[str, dict[str, float]]:
    """Rank@1/5/10 without fbinfer's scorers or metrics: the model called directly on each list's
    pairs (the caption tokenized, the image's cached patch features), the truth's rank counted."""
    store, tok = FeatureStore(data, ck.config).ensure(data.test), ck.tokenizer()
    out = {}
    for d in ("image_to_text", "text_to_image"):
        ranks = []
        for q in data.candidates.direction(d):
            texts, images = ([q.query] * len(q.candidates), q.candidates) if d == "text_to_image" else (q.candidates, [q.query] * len(q.candidates))
            t = tok([data.test[i].text for i in texts])
            with torch.no_grad():
                logits = ck.model(torch.as_tensor(t.input_ids), torch.as_tensor(t.attention_mask),
                                  store.get([data.test[i] for i in images]).float()).logit.numpy()
            assert len(set(logits.tolist())) == len(logits)  # no ties: the counted rank is the only one
            ranks.append(1 + int((logits[1:] > logits[0]).sum()))
        out[d] = {f"rank{k}": 100.0 * sum(r <= k for r in ranks) / len(ranks) for k in (1, 5, 10)}
    return out


def test_train_eval_cli(tmp_path, tiny_data):
    model = tmp_path / "m.pt"
    r = fbinfer("train", "--data", str(tiny_data), "-o", str(model), "--config", "fashionbert-tiny", "--steps", "4", "--batch-size", "8")
    assert r.returncode == 0, r.stderr
    assert model.is_file() and (tmp_path / "m.pt.resume").is_file()
    log = [json.loads(line) for line in (tmp_path / "m.train.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 4 and {"mlm", "mpm", "tia", "w_mlm", "w_mpm", "w_tia"} <= set(log[-1])
    out = tmp_path / "eval.json"
    r = fbinfer("eval", str(model), "--data", str(tiny_data), "--json", str(out))
    assert r.returncode == 0, r.stderr
    res = json.loads(out.read_text())
    want = ranks_by_hand(load_checkpoint(model), load_data(tiny_data))
    for d in ("image_to_text", "text_to_image"):
        assert res[d]["queries"] == 12 and res[d]["candidates"] == 12
        assert {k: res[d][k] for k in ("rank1", "rank5", "rank10")} == pytest.approx(want[d], abs=1e-3)  # the JSON keeps 4 decimals
    r = fbinfer("train", "--data", str(tiny_data), "-o", str(model), "--config", "fashionbert-tiny", "--steps", "6", "--batch-size", "8", "--resume")
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(model).meta["steps"] == 6


def test_interrupted_training_resumes_exactly(tmp_path, tiny_data, monkeypatch):
    """A run killed after its step-4 checkpoint and resumed ends where an uninterrupted run ends."""
    from fbinfer.model.config import preset
    from fbinfer.training import trainer

    data = load_data(tiny_data)
    cfg = preset("fashionbert-tiny")
    tc = trainer.TrainConfig(steps=8, batch_size=8, checkpoint_every=4, log_every=1, tia_warmup_steps=3)  # resumes after the warm-up
    full = trainer.train(data, cfg, tc, tmp_path / "full.pt")
    real, calls = trainer.make_batch, []

    def dying(*a, **k):
        calls.append(1)
        if len(calls) > 5:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(trainer, "make_batch", dying)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(data, cfg, tc, tmp_path / "cut.pt")
    assert load_checkpoint(tmp_path / "cut.pt").meta["steps"] == 4
    monkeypatch.setattr(trainer, "make_batch", real)
    resumed = trainer.train(data, cfg, tc, tmp_path / "cut.pt", resume=True)
    assert resumed.last["tia"] == pytest.approx(full.last["tia"], rel=1e-4)
    a, b = load_checkpoint(tmp_path / "full.pt").model, load_checkpoint(tmp_path / "cut.pt").model
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert (x - y).abs().max() < 1e-5, k


def test_fine_tune_from_a_checkpoint_with_ranking_lists(tmp_path, tiny_model, tiny_data):
    out = tmp_path / "tuned.pt"
    r = fbinfer("train", "--data", str(tiny_data), "-o", str(out), "--from", str(tiny_model), "--steps", "3",
                "--batch-size", "8", "--lists", "2", "--list-size", "4")
    assert r.returncode == 0, r.stderr
    src, tuned = load_checkpoint(tiny_model), load_checkpoint(out)
    assert tuned.config == src.config and tuned.vocab == src.vocab
    assert {k: tuned.meta["train"][k] for k in ("lists", "list_size", "align_steps", "tia_warmup_steps")} == \
        {"lists": 2, "list_size": 4, "align_steps": 0, "tia_warmup_steps": 0}
    assert any((a - b).abs().max() > 0 for a, b in zip(src.model.state_dict().values(), tuned.model.state_dict().values()))
    r = fbinfer("train", "--data", str(tiny_data), "-o", str(out), "--from", str(tiny_model), "--lists", "1", "--list-size", "1")
    assert_one_line_error(r, "--list-size 1")
    r = fbinfer("train", "--data", str(tiny_data), "-o", str(out), "--from", str(tiny_model), "--hard-ratio", "1.5")
    assert_one_line_error(r, "--hard-ratio")


def test_tia_with_lists_adds_the_lists_cross_entropy(tiny_model, tiny_data):
    import torch.nn.functional as F

    from fbinfer.data.features import FeatureStore
    from fbinfer.training.objectives import pretrain_losses
    from fbinfer.training.pairs import PairSampler, make_batch

    ck, data = load_checkpoint(tiny_model), load_data(tiny_data)
    sampler = PairSampler(data.train, seed=0, batch_size=6)
    texts, images, labels = sampler.pairs(0)
    lt, li, ll = sampler.ranking_lists(0, count=2, size=5)
    b = make_batch(texts + lt, images + li, torch.cat([labels, ll]), ck.tokenizer(), FeatureStore(data, ck.config).ensure(data.train),
                   torch.Generator().manual_seed(0), 0.0, 0.0)
    model = ck.model.eval()
    with torch.no_grad():
        logit = model(b.input_ids, b.attention_mask, b.patches).logit
        tia = pretrain_losses(model, b, lists=2, list_size=5)[0][2]
    expected = F.binary_cross_entropy_with_logits(logit[:6], labels.float()) + F.cross_entropy(logit[6:].view(2, 5), torch.zeros(2, dtype=torch.long))
    assert tia.item() == pytest.approx(expected.item(), rel=1e-5)
    assert pretrain_losses(model, b)[0][2].item() != pytest.approx(tia.item())  # without lists: BCE over every row


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_short_training_lowers_tia_loss(tmp_path, tiny_data, precision):
    from fbinfer.model.config import preset
    from fbinfer.training.trainer import TrainConfig, train

    tc = TrainConfig(steps=30, batch_size=16, log_every=1, head_lr=3e-3, lr=1e-3, tia_warmup_steps=0, precision=precision)
    train(load_data(tiny_data), preset("fashionbert-tiny"), tc, tmp_path / "m.pt")
    log = [json.loads(line)["tia"] for line in (tmp_path / "m.train.jsonl").read_text().splitlines()]
    assert sum(log[-5:]) / 5 < sum(log[:5]) / 5
    ck = load_checkpoint(tmp_path / "m.pt")
    assert ck.meta["train"]["precision"] == precision and {p.dtype for p in ck.model.parameters()} == {torch.float32}


def test_bf16_autocast_runs_the_matmuls_in_bf16_and_keeps_fp32_for_fp32():
    from fbinfer.training.loop import autocast

    layer = torch.nn.Linear(8, 8)
    x = torch.randn(2, 8)
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        with autocast(precision):
            assert layer(x).dtype == dtype, precision
    with pytest.raises(FbinferError, match="--precision 'fp16'"):
        autocast("fp16")


def test_eval_scores_are_identical_across_runs(tiny_model, tiny_data):
    data = load_data(tiny_data)
    ck = load_checkpoint(tiny_model)
    scorer = torch_scorer(ck.model, ck.tokenizer(), FeatureStore(data, ck.config).ensure(data.test))
    r1, s1 = evaluate(scorer, data, queries=5, batch_size=7)
    _, s2 = evaluate(scorer, data, queries=5, batch_size=64)
    assert s1.keys() == s2.keys() and r1["image_to_text"]["queries"] == 5
    assert max(abs(s1[k] - s2[k]) for k in s1) < 1e-4  # batching/padding does not change a score


def test_cli_errors_are_one_line(tmp_path, tiny_data):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02junk")
    cases = [
    (["eval", "nope.pt", "--data", "DATA"], "nope.pt: FashionBERT checkpoint not found"),
    (["eval", "CORRUPT", "--data", "DATA"], "not a readable FashionBERT checkpoint"),
    (["train", "--data", "missing_dir", "-o", "x.pt"], "--data missing_dir: no such file or folder"),
    (["train", "--data", "DATA", "-o", "x.pt", "--config", "bogus"], "unknown config 'bogus'"),
    (["train", "--data", "DATA", "-o", "x.pt", "--loss-weighting", "magic"], "--loss-weighting"),
    (["train", "--data", "DATA", "-o", "x.pt", "--steps", "0"], "--steps: must be positive"),
    (["train", "--data", "DATA", "-o", "x.pt", "--precision", "fp16"], "--precision 'fp16'"),
    (["train", "--data", "DATA", "-o", "x.pt", "--lr", "0"], "--lr: must be positive"),
    (["train", "--data", "DATA", "-o", "x.pt", "--fixed-weights", "1,1"], "--fixed-weights: 1.0,1.0 is not three numbers"),
    (["train", "--data", "DATA", "-o", "x.pt", "--checkpoint-every", "0"], "--checkpoint-every: must be >= 1"),
    (["data", "synth", "-o", "DATA"], "not empty"),
    ]
    assert_cli_errors([([str(tiny_data) if a == "DATA" else str(corrupt) if a == "CORRUPT" else a for a in args], message)
                       for args, message in cases])
