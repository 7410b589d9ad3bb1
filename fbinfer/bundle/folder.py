"""A bundle folder: the graphs, engines, vocab and manifest that ``fbinfer export`` writes for a
FashionBERT model, and ``fbinfer embed export`` for the dual encoder (``model``: "embed").

One class opens and validates it (schema and version, files present and unaltered), names its
files, lists its graphs by (target, precision), keeps the parity rows against PyTorch, records
engines, and knows the checkpoint it was exported from. Export writes through it, ``fbinfer build`` records engines through it, and
``fbinfer.load`` and ``fbinfer bench`` read through it, so no other module builds a file name or
reads the manifest by hand.

    manifest.json    what everything below is, with a sha256 per file (written last)
    vocab.txt        the tokenizer's WordPiece vocab
    trt.fp32.onnx    standard ONNX ops (TensorRT, OpenVINO); every other graph derives from it
    trt.fp16.onnx    FP16 with FP32 islands          trt.int8.onnx   Q/DQ for TensorRT, FP16 elsewhere
    ort.fp32.onnx    fused for ONNX Runtime          ort.int8.onnx   CPU INT8 for ONNX Runtime
    ov.int8.onnx     Q/DQ for OpenVINO, FP32 elsewhere
    extractor.fp32.onnx / extractor.fp16.onnx   the image extractor (EfficientNet-Lite0 trunk):
                     preprocessed pixels -> patch features, so serving needs no torch
    engine.<precision>.plan   TensorRT engines, added by fbinfer build
"""
from __future__ import annotations

from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import Any

from fbinfer.bundle.io_spec import TensorSpec, input_specs
from fbinfer.errors import FbinferError
from fbinfer.fileio import read_json, sha256, write_json
from fbinfer.model.config import FashionBertConfig

MANIFEST = "manifest.json"
FORMAT = "fbinfer.bundle"
FORMAT_VERSION = 2
PREFIX = {"tensorrt": "trt", "onnxruntime": "ort", "openvino": "ov"}  # graph keys and file names: <prefix>.<precision>
TARGETS = tuple(PREFIX)
VOCAB = "vocab.txt"
COMMON: dict[str, type] = {"config": dict, "tokenizer": dict, "graphs": dict, "files": dict, "source": dict, "parity": list}
REQUIRED: dict[str, dict[str, type]] = {  # per model kind: the manifest fields it must have
    "fashionbert": {**COMMON, "inputs": list, "outputs": list, "max_batch": int},
    "embed": COMMON,
}
NOUNS = {"fashionbert": "a FashionBERT model", "embed": "an embedding model (the dual encoder)"}


def graph_key(target: str, precision: str) -> str:
    """``trt.fp16``, ``ort.int8``, ...: the manifest's name of a graph."""
    if target not in PREFIX:
        raise FbinferError(f"unknown graph target {target!r} (choose from {', '.join(TARGETS)})")
    return f"{PREFIX[target]}.{precision}"


def engine_file(precision: str) -> str:
    return f"engine.{precision}.plan"


class Bundle:
    """An opened (validated) or a new bundle folder.

    Example:
        b = Bundle.open("model.bundle")
        b.graph("onnxruntime", "int8")      # Path of ort.int8.onnx, its sha256 checked
        b.config.num_layers
    """

    def __init__(self, folder: Path, manifest: dict[str, Any], verify: bool = True):
        self.folder, self.manifest, self.verify = Path(folder), manifest, verify
        self._checked: set[str] = set()

    # ---- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, folder: str | Path, verify: bool = True, model: str = "fashionbert") -> Bundle:
        """Validate and open ``folder``, a bundle of ``model`` ("fashionbert" or "embed"). ``verify``:
        check each file's sha256 on first use (sizes are always checked); False skips the hashes,
        for hot reloads of a trusted folder."""
        folder = Path(folder)
        path = folder / MANIFEST
        if not folder.is_dir() or not path.is_file():
            raise not_a_bundle(folder, f"no {MANIFEST}; make one with fbinfer export MODEL.pt")
        manifest = read_json(path)
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
            raise not_a_bundle(folder, f"{MANIFEST} has format {got!r}, not {FORMAT!r}")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise FbinferError(f"{path}: bundle format version {manifest.get('format_version')!r} is not supported "
                               f"(this fbinfer reads version {FORMAT_VERSION}); re-export it with fbinfer export")
        bundle = cls(folder, manifest, verify)
        if bundle.model != model:
            raise FbinferError(f"{folder}: a bundle of {NOUNS.get(bundle.model, repr(bundle.model))}, where {NOUNS[model]} is needed")
        bundle._validate()
        return bundle

    def _validate(self) -> None:
        m, where = self.manifest, self.folder / MANIFEST
        for field, kind in REQUIRED[self.model].items():
            if not isinstance(m.get(field), kind):
                raise FbinferError(f"{where}: field '{field}' must be a {kind.__name__}, got {type(m.get(field)).__name__}")
        if not all(isinstance(m["source"].get(f), str) for f in ("checkpoint", "sha256")):
            raise FbinferError(f"{where}: field 'source' needs 'checkpoint' and 'sha256'")
        if self.model == "fashionbert":
            self.config  # noqa: B018 - parsed now, so a malformed config fails at open
        for name, record in m["files"].items():
            inside(self.folder, name, where)
            if not isinstance(record, dict) or not isinstance(record.get("bytes"), int) or not isinstance(record.get("sha256"), str):
                raise FbinferError(f"{where}: files['{name}'] needs 'bytes' and 'sha256'")
            file = self.folder / name
            if not file.is_file():
                raise FbinferError(f"{file}: missing from the bundle (listed in {MANIFEST})")
            if file.stat().st_size != record["bytes"]:
                raise FbinferError(f"{file}: {file.stat().st_size} bytes, the manifest recorded {record['bytes']} "
                                   f"(the file was changed or truncated; re-export the bundle)")
        for key, g in m["graphs"].items():
            if not isinstance(g, dict) or not all(isinstance(g.get(f), str) for f in ("file", "target", "precision")):
                raise FbinferError(f"{where}: graphs['{key}'] needs 'file', 'target' and 'precision'")
            if g["file"] not in m["files"]:
                raise FbinferError(f"{where}: graphs['{key}'] file {g['file']!r} is not listed under 'files'")
        for precision, record in m.get("engines", {}).items():
            if not isinstance(record, dict) or record.get("file") != engine_file(precision):
                raise FbinferError(f"{where}: engines['{precision}'] must name {engine_file(precision)}")
        extractor = m.get("extractor")
        if extractor is not None:
            graphs = extractor.get("graphs", {}) if isinstance(extractor, dict) else None
            if not isinstance(graphs, dict) or any(not isinstance(g, dict) or g.get("file") not in m["files"] for g in graphs.values()):
                raise FbinferError(f"{where}: field 'extractor' must list graphs whose files are under 'files'")
        plans = (m.get("tuning") or {}).get("plans", {}) if isinstance(m.get("tuning", {}), dict) else None
        if not isinstance(plans, dict) or any(p is not None and (not isinstance(p, dict) or p.get("file") not in m["files"])
                                              for p in plans.values()):
            raise FbinferError(f"{where}: field 'tuning' must list plans whose files are under 'files'")
        vocab = m["tokenizer"].get("vocab")
        if vocab not in m["files"]:
            raise FbinferError(f"{where}: tokenizer vocab {vocab!r} is not listed under 'files'")

    # ---- reading ---------------------------------------------------------------------------------
    @cached_property
    def config(self) -> FashionBertConfig:
        try:
            return FashionBertConfig.from_dict(self.manifest["config"])
        except TypeError as e:
            raise FbinferError(f"{self.folder / MANIFEST}: field 'config' is malformed ({e})") from None

    @property
    def inputs(self) -> tuple[TensorSpec, ...]:
        """What every matcher graph of this bundle takes (``fbinfer.bundle.io_spec``)."""
        return input_specs(self.config)

    def file(self, name: str) -> Path:
        """Path of a listed file, its sha256 checked against the manifest on first use."""
        record = self.manifest["files"].get(name)
        if record is None:
            raise FbinferError(f"{self.folder}: no file {name!r} in the bundle")
        path = self.folder / name
        if self.verify and name not in self._checked:
            if sha256(path) != record["sha256"]:
                raise FbinferError(f"{path}: sha256 does not match the manifest (the file was changed after export; "
                                   f"re-export the bundle)")
            self._checked.add(name)
        return path

    @property
    def model(self) -> str:
        """What the bundle holds: "fashionbert" or "embed" (the dual encoder)."""
        return self.manifest.get("model", "fashionbert")

    @property
    def max_batch(self) -> int:
        return int(self.manifest["max_batch"])

    @property
    def name(self) -> str:
        return self.folder.name

    def vocab(self) -> list[str]:
        vocab = self.file(self.manifest["tokenizer"]["vocab"]).read_text(encoding="utf-8").splitlines()
        if self.model == "fashionbert" and len(vocab) != self.config.vocab_size:
            raise FbinferError(f"{self.folder / VOCAB}: {len(vocab)} tokens, the config says {self.config.vocab_size}")
        return vocab

    def tokenizer(self):
        from fbinfer.model.tokenizer import TextTokenizer

        return TextTokenizer(self.vocab(), self.config.max_text_len)

    def extractor_graph(self, precision: str = "fp32") -> Path | None:
        """The image extractor's graph, or None where the bundle has none (a pixel-patch model, or a
        bundle exported before fbinfer wrote one: its images need the PyTorch extractor)."""
        g = self.manifest.get("extractor", {}).get("graphs", {}).get(precision)
        return self.file(g["file"]) if g else None

    def graphs(self) -> dict[tuple[str, str], dict]:
        """(target, precision) -> the graph's manifest entry."""
        return {(g["target"], g["precision"]): g for g in self.manifest["graphs"].values()}

    def has_graph(self, target: str, precision: str) -> bool:
        return graph_key(target, precision) in self.manifest["graphs"]

    def graph(self, target: str, precision: str) -> Path:
        """The graph's file, or one line naming the graphs there are and how to make this one."""
        key = graph_key(target, precision)
        entry = self.manifest["graphs"].get(key)
        if entry is None:
            have = ", ".join(sorted(self.manifest["graphs"])) or "none"
            raise FbinferError(f"{self.folder}: no {key} graph (has {have}); export it: "
                               f"fbinfer export {self.source_checkpoint} --precision {precision}")
        return self.file(entry["file"])

    def engine(self, precision: str) -> tuple[Path, dict]:
        """A TensorRT engine's file and record, or one line with the build command."""
        record = self.manifest.get("engines", {}).get(precision)
        if record is None:
            raise FbinferError(f"{self.folder}: no TensorRT {precision} engine; build it with: "
                               f"fbinfer build {self.folder} --precision {precision}")
        return self.file(record["file"]), record

    def engines(self) -> dict[str, dict]:
        return dict(self.manifest.get("engines", {}))

    @property
    def source_checkpoint(self) -> Path:
        return Path(self.manifest["source"]["checkpoint"])

    def load_source(self):
        """The checkpoint this bundle was exported from (for the torch backend and the bench's
        reference), refused if it changed since the export."""
        from fbinfer.model.checkpoint import load_checkpoint

        path = self.source_checkpoint
        if not path.is_file():
            raise FbinferError(f"{self.folder}: its source checkpoint {path} is not here (the torch backend and the "
                               f"PyTorch reference need it)")
        if self.verify and sha256(path) != self.manifest["source"]["sha256"]:
            raise FbinferError(f"{path}: changed since {self.folder} was exported from it (sha256 differs); re-export")
        return load_checkpoint(path)

    # ---- writing ---------------------------------------------------------------------------------
    @classmethod
    def create(cls, folder: Path, header: dict[str, Any]) -> Bundle:
        """A new bundle in an empty ``folder`` (export's temporary folder); ``save`` writes its manifest."""
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **header, "files": {}, "graphs": {}, "parity": []}
        return cls(folder, manifest)

    def graph_path(self, target: str, precision: str) -> Path:
        """Where the (target, precision) graph is written."""
        return self.folder / f"{graph_key(target, precision)}.onnx"

    def add_file(self, name: str) -> None:
        path = self.folder / name
        self.manifest["files"][name] = {"bytes": path.stat().st_size, "sha256": sha256(path)}
        self._checked.add(name)

    def add_graph(self, target: str, precision: str, **info: Any) -> dict:
        """Record the graph written at ``graph_path``; returns its entry for further notes."""
        path = self.graph_path(target, precision)
        self.add_file(path.name)
        entry = {"file": path.name, "target": target, "precision": precision, **info}
        self.manifest["graphs"][graph_key(target, precision)] = entry
        return entry

    def add_parity(self, graph: str, backend: str, precision: str, parity: dict, **notes: Any) -> None:
        """One row of the parity table: ``graph`` run on ``backend`` at ``precision`` against PyTorch."""
        self.manifest["parity"].append({"graph": graph, "backend": backend, "precision": precision, **parity, **notes})

    def tower_path(self, name: str) -> Path:
        """Where an embedding bundle's FP32 graph of tower ``name`` is written."""
        return self.folder / f"{name}.fp32.onnx"

    def add_tower(self, name: str, **info: Any) -> dict:
        """Record the graph of tower ``name`` written at ``tower_path``."""
        file = self.tower_path(name).name
        self.add_file(file)
        entry = self.manifest["graphs"][name] = {"file": file, "target": name, "precision": "fp32", **info}
        return entry

    def parity(self, graph: str, backend: str | None = None) -> dict:
        """The parity row of a graph (on ONNX Runtime unless ``backend`` is named)."""
        for row in self.manifest.get("parity", []):
            if row["graph"] == graph and row["backend"] == (backend or "onnxruntime"):
                return row
        raise FbinferError(f"{self.folder}: no parity record for {graph} on {backend or 'onnxruntime'}")

    def save(self) -> None:
        write_json(self.folder / MANIFEST, self.manifest)

    def record_engine(self, precision: str, record: dict[str, Any]) -> None:
        """Add an engine built at ``self.folder / engine_file(precision)`` and rewrite the manifest."""
        name = engine_file(precision)
        self.add_file(name)
        self.manifest.setdefault("engines", {})[precision] = {"file": name, "precision": precision, **record}
        self.save()


def inside(folder: Path, name: Any, where: Path) -> None:
    """A manifest's file names are plain relative paths inside the bundle (no '..', no absolute path)."""
    if not isinstance(name, str) or not name or PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts \
            or "\\" in name or "\0" in name:
        raise FbinferError(f"{where}: file name {name!r} points outside the bundle")


def not_a_bundle(folder: Path, why: str) -> FbinferError:
    """The one wording for a folder that is not a bundle."""
    return FbinferError(f"{folder}: not an fbinfer bundle ({why})")
