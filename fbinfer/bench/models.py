"""The model a bench or tuning run measures: its bundle, its source checkpoint and its data. A
checkpoint is exported into ``MODEL.bundle`` when there is none, or anew when the one there came
from other checkpoint bytes; the run says so."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fbinfer.bundle import Bundle
from fbinfer.data.source import DataSource, load_data
from fbinfer.export.config import ExportConfig
from fbinfer.export.exporter import default_bundle_dir, export_bundle
from fbinfer.fileio import sha256
from fbinfer.model.checkpoint import Checkpoint, load_checkpoint


@dataclass
class ModelBench:
    name: str
    bundle: Bundle
    data: DataSource
    ck: Checkpoint = field(repr=False)
    exported: str | None = None  # why the bench exported the bundle itself, if it did


def resolve(model: Path, data: Path | None) -> ModelBench:
    """A bundle folder, or a checkpoint exported into MODEL.bundle: made when missing, made anew
    when the folder was exported from other checkpoint bytes (its manifest's sha256 differs)."""
    if model.is_dir():
        bundle = Bundle.open(model)
        ck = bundle.load_source()
        return ModelBench(ck.path.stem, bundle, load_data(ck.training_data(data)), ck)
    ck = load_checkpoint(model)
    folder, why = default_bundle_dir(model), None
    if not folder.is_dir():
        why = f"exported {model} into {folder} (no bundle there yet)"
    elif Bundle.open(folder).manifest["source"]["sha256"] != sha256(model):
        why = f"exported {model} into {folder} anew: the bundle there came from other checkpoint bytes"
    source = load_data(ck.training_data(data))
    if why:
        export_bundle(model, source, folder, ExportConfig(parity_queries=4), force=True)
    return ModelBench(ck.path.stem, Bundle.open(folder), source, ck, why)
