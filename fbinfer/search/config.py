"""The dual encoder's sizes and training options: dataclasses, torch-free (an embedding bundle's manifest
holds the sizes; the CLI states its defaults from both)."""
from __future__ import annotations

from dataclasses import dataclass

from fbinfer.dictconfig import DictConfig
from fbinfer.errors import FbinferError
from fbinfer.model.config import FEATURE_DIMS, MINILM, FashionBertConfig
from fbinfer.training.config import check_schedule


@dataclass(frozen=True)
class EmbedConfig(DictConfig):
    name: str = "fashion-dual-minilm"
    dim: int = 256  # the shared space
    text_layers: int = 6  # MiniLM's first N layers
    max_text_len: int = 64
    image_hidden: int = 384
    image_layers: int = 1
    image_heads: int = 6
    feature_layer: str = "blocks"  # the patch features (EfficientNet-Lite0), as FashionBERT's
    grid_size: int = 8
    image_size: int = 256
    dropout: float = 0.1
    init: str | None = MINILM  # MINILM, a local BERT folder, or None (random; tests)
    tiny: bool = False  # a 64-wide, 2-layer text tower for tests

    def text_config(self) -> FashionBertConfig:
        """The text tower's BERT sizes, as a FashionBertConfig (so MiniLM loads into it unchanged)."""
        if self.tiny:
            return FashionBertConfig(name=self.name, hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                                     max_text_len=self.max_text_len, dropout=self.dropout, init=None)
        return FashionBertConfig(name=self.name, num_layers=self.text_layers, max_text_len=self.max_text_len,
                                 dropout=self.dropout, init=self.init)

    def feature_config(self) -> FashionBertConfig:
        """The patch features the image tower reads; the feature cache and extractor are keyed by it."""
        return FashionBertConfig(feature_layer=self.feature_layer, patch_feature_dim=FEATURE_DIMS.get(self.feature_layer, -1),
                                 grid_size=self.grid_size, image_size=self.image_size, init=None)

    @property
    def feature_key(self) -> str:
        return self.feature_config().feature_key

    def validate(self) -> EmbedConfig:
        for name in ("dim", "text_layers", "image_hidden", "image_layers", "image_heads"):
            if getattr(self, name) < 1:
                raise FbinferError(f"embed config: {name} must be >= 1, got {getattr(self, name)}")
        if self.image_hidden % self.image_heads:
            raise FbinferError(f"embed config: image_hidden {self.image_hidden} is not divisible by image_heads {self.image_heads}")
        if not 0 <= self.dropout < 1:
            raise FbinferError(f"embed config: dropout must be in [0, 1), got {self.dropout}")
        self.feature_config().validate()
        return self


@dataclass
class EmbedTrainConfig:
    steps: int | None = 300
    epochs: float | None = None
    batch_size: int = 64  # items (two views of batch_size / 2 products), global over all processes
    lr: float = 5e-5  # the pretrained text encoder
    head_lr: float = 5e-4  # the image tower, projections and product head (new parameters)
    warmup: float = 0.06
    weight_decay: float = 0.01
    hard_ratio: float = 0.5  # share of products drawn with a partner from the same sub-category
    product_weight: float = 0.5  # the image+text term
    teacher: str | None = None  # a FashionBERT checkpoint: adds the kd term
    kd_weight: float = 1.0
    kd_temperature: float = 1.0
    lists: int = 4  # teacher ranking lists per global batch (with a teacher)
    list_size: int = 8
    precision: str = "fp32"
    checkpoint_every: int = 200
    log_every: int = 10
    seed: int = 0

    def validate(self) -> EmbedTrainConfig:
        check_schedule(self)
        if self.batch_size < 4 or self.batch_size % 2:
            raise FbinferError(f"--batch-size {self.batch_size}: must be even and >= 4 (two views per product)")
        for name in ("head_lr", "kd_temperature"):
            if not getattr(self, name) > 0:
                raise FbinferError(f"--{name.replace('_', '-')}: must be positive, got {getattr(self, name)}")
        for name in ("product_weight", "kd_weight"):
            if getattr(self, name) < 0:
                raise FbinferError(f"--{name.replace('_', '-')}: must be >= 0, got {getattr(self, name)}")
        return self
