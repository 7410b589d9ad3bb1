"""The dual encoder's sizes: one dataclass, torch-free (an embedding bundle's manifest holds it)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from fbinfer.errors import FbinferError
from fbinfer.model.config import FEATURE_DIMS, MINILM, TYPES, FashionBertConfig


@dataclass(frozen=True)
class EmbedConfig:
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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: object, where: str = "embed config") -> EmbedConfig:
        if not isinstance(d, dict):
            raise FbinferError(f"{where}: expected an object of fields")
        known = {f.name: f for f in fields(cls)}
        for name, value in d.items():
            if name not in known:
                raise FbinferError(f"{where}: unknown field {name!r}")
            kinds = TYPES[known[name].type]
            if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
                raise FbinferError(f"{where}: field {name!r} is {value!r}, expected {known[name].type}")
        return cls(**d).validate()
