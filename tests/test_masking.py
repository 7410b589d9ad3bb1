import torch

from fbinfer.model.init import default_vocab
from fbinfer.model.tokenizer import TextTokenizer
from fbinfer.training.objectives import mpm_kl, patch_mask, whole_word_mask


def test_whole_word_masking_masks_every_piece_of_a_word():
    vocab = default_vocab()
    tok = TextTokenizer(vocab, 64)
    b = tok(["unbelievably embroidered cardigans everywhere"] * 20).as_torch()
    gen = torch.Generator().manual_seed(0)
    ids, labels = whole_word_mask(b, torch.arange(20), 0.15, len(vocab), tok.mask_id, tok.special_ids, gen)
    for r in range(20):
        words = b.word_ids[r]
        masked_words = {words[p] for p in range(len(words)) if labels[r, p] != -100}
        assert len(masked_words) == 1  # 15% of 4 words rounds to at least one word
        for p, w in enumerate(words):  # all pieces of a chosen word carry a label, and only those
            assert (labels[r, p] != -100) == (w in masked_words)
            if labels[r, p] != -100:
                assert labels[r, p] == b.input_ids[r, p]
    assert (ids == tok.mask_id).sum() > 0
    assert labels[:, 0].eq(-100).all()  # [CLS] never masked


def test_only_chosen_rows_are_masked():
    tok = TextTokenizer(default_vocab(), 64)
    b = tok(["red dress", "blue shirt"]).as_torch()
    gen = torch.Generator().manual_seed(0)
    _, labels = whole_word_mask(b, torch.tensor([1]), 0.15, 30522, tok.mask_id, tok.special_ids, gen)
    assert labels[0].eq(-100).all() and labels[1].ne(-100).any()
    pm = patch_mask(2, torch.tensor([1]), 64, 0.1, gen)
    assert pm[0].sum() == 0 and pm[1].sum() == 6  # 10% of 64 patches


def test_mpm_kl_is_zero_for_identical_and_positive_otherwise():
    t = torch.randn(5, 16)
    assert mpm_kl(t, t).abs() < 1e-6
    assert mpm_kl(torch.zeros(5, 16), t) > 0


def test_zero_probability_masks_nothing():
    tok = TextTokenizer(default_vocab(), 64)
    b = tok(["red dress with long sleeves"]).as_torch()
    gen = torch.Generator().manual_seed(0)
    ids, labels = whole_word_mask(b, torch.tensor([0]), 0.0, 30522, tok.mask_id, tok.special_ids, gen)
    assert torch.equal(ids, b.input_ids) and labels.eq(-100).all()
    assert patch_mask(1, torch.tensor([0]), 64, 0.0, gen).sum() == 0
