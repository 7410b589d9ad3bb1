"""Backends as Polygraphy-style runners: ``activate()`` loads (lazily, once), ``infer(feeds)`` maps
input name -> array to output name -> array, ``deactivate()`` frees. Every backend takes the same
feeds (``fbinfer.export.io_spec``), so any two can be compared pair by pair."""
from __future__ import annotations

from pathlib import Path
from typing import Self

import numpy as np
import torch

from fbinfer.errors import FbinferError
from fbinfer.export.io_spec import INPUT_NAMES, OUTPUTS
from fbinfer.model.fashionbert import FashionBert


class Runner:
    name = "runner"

    def activate(self) -> Runner:
        return self

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def deactivate(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()


class TorchRunner(Runner):
    """The PyTorch reference model: fp32 eager on CPU by default; fp16/bf16 and CUDA on request."""

    def __init__(self, model: FashionBert, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 name: str = "pytorch-fp32"):
        self.model, self.device, self.dtype, self.name = model.eval(), device, dtype, name

    def activate(self) -> TorchRunner:
        self.model.to(device=self.device, dtype=self.dtype)
        return self

    @torch.inference_mode()
    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids, mask, patches = (torch.from_numpy(np.ascontiguousarray(feeds[n])).to(self.device) for n in INPUT_NAMES)
        logit = self.model(ids, mask, patches.to(self.dtype)).logit
        return {OUTPUTS[0].name: logit.float().cpu().numpy()}


class OnnxRuntimeRunner(Runner):
    """An ONNX graph in ONNX Runtime (CPU unless other providers are given)."""

    def __init__(self, path: Path, providers: tuple[str, ...] = ("CPUExecutionProvider",), threads: int | None = None):
        self.path, self.providers, self.threads = Path(path), providers, threads
        self.name = f"onnxruntime:{self.path.name}"
        self.session = None

    def activate(self) -> OnnxRuntimeRunner:
        if self.session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            if self.threads:
                opts.intra_op_num_threads = self.threads
            opts.log_severity_level = 3
            try:
                self.session = ort.InferenceSession(str(self.path), opts, providers=list(self.providers))
            except Exception as e:  # noqa: BLE001 - ORT raises its own Fail/InvalidGraph types
                raise FbinferError(f"{self.path}: ONNX Runtime cannot load it ({str(e).splitlines()[0][:160]})") from None
            self.inputs = {i.name: i.type for i in self.session.get_inputs()}
        return self

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.activate()
        typed = {n: feeds[n].astype(np.float16 if t == "tensor(float16)" else feeds[n].dtype, copy=False)
                 for n, t in self.inputs.items()}
        names = [o.name for o in OUTPUTS]
        return {n: v.astype(np.float32, copy=False) for n, v in zip(names, self.session.run(names, typed))}

    def deactivate(self) -> None:
        self.session = None
