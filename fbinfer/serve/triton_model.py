"""The Triton Python-backend model behind ``fbinfer serve``: fbinfer's own runtime (``fbinfer.load``),
so the server scores exactly as the library does. Imported inside Triton's Python stub process,
where ``triton_python_backend_utils`` exists; one class serves the two models that run FashionBERT,
told apart by the ``kind`` parameter of their config.pbtxt (``fbinfer.serve.repository``):

    fashionbert        TEXT + (IMAGE bytes | PATCHES) -> LOGIT          dynamic batching over requests
    image_features     IMAGE bytes -> PATCHES                           dynamic batching over requests

The models that rank (``rerank``, ``search``) send their pairs to these (``fbinfer.serve.catalog_model``).

A request that cannot be served (wrong inputs, empty text, corrupt image bytes) gets an error with
a message; the requests batched with it are still answered.
"""
from __future__ import annotations

import json

import numpy as np

from fbinfer.errors import FbinferError


class RequestError(Exception):
    """What one request got wrong; sent back to its client as the error message."""


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        import fbinfer

        params = model_params(args)
        self.kind = params["kind"]
        self.matcher = fbinfer.load(params["bundle"], backend=params["backend"], precision=params["precision"] or None,  # "": tuned
                                    batch_size=int(params["batch_size"]), verify=False)
        self.patch_shape = (self.matcher.config.num_patches, self.matcher.config.patch_feature_dim)
        self.handlers = {"fashionbert": self._score, "image_features": self._features}

    def execute(self, requests: list) -> list:
        import triton_python_backend_utils as pb

        return self.handlers[self.kind](pb, requests)

    # ---- the two models --------------------------------------------------------------------------
    def _score(self, pb, requests: list) -> list:
        """Every good request's pairs scored in one call (Triton's dynamic batch), split back."""
        parsed: list[tuple[list[str], np.ndarray] | Exception] = []
        for r in requests:
            try:
                texts = _texts(pb, r, "TEXT")
                parsed.append((texts, self._images(pb, r, "IMAGE", "PATCHES", len(texts))))
            except (RequestError, FbinferError) as e:
                parsed.append(e)
        good = [p for p in parsed if not isinstance(p, Exception)]
        logits = self.matcher.score([t for ts, _ in good for t in ts], np.concatenate([f for _, f in good])) if good else []
        out, start = [], 0
        for p in parsed:
            if isinstance(p, Exception):
                out.append(_error(pb, p))
                continue
            n = len(p[0])
            out.append(pb.InferenceResponse([pb.Tensor("LOGIT", np.asarray(logits[start:start + n], np.float32).reshape(n, 1))]))
            start += n
        return out

    def _features(self, pb, requests: list) -> list:
        out = []
        for r in requests:
            try:
                out.append(pb.InferenceResponse([pb.Tensor("PATCHES", self._images(pb, r, "IMAGE", None, None))]))
            except (RequestError, FbinferError) as e:
                out.append(_error(pb, e))
        return out

    # ---- inputs ----------------------------------------------------------------------------------
    def _images(self, pb, request, image_name: str, patches_name: str | None, n: int | None) -> np.ndarray:
        """(N, P, D) features from encoded image bytes or from patch features: exactly one is given."""
        blobs, patches = _optional(pb, request, image_name), _optional(pb, request, patches_name) if patches_name else None
        if (blobs is None) == (patches is None):
            either = f"{image_name} (encoded images)" + (f" or {patches_name} (patch features)" if patches_name else "")
            raise RequestError(f"give {either}" if blobs is None else f"give {image_name} or {patches_name}, not both")
        if patches is not None:
            feats = patch_array(patches_name, patches, self.patch_shape)
        else:
            feats = self.matcher.patch_features(image_blobs(image_name, blobs))
        if n is not None and len(feats) != n:
            raise RequestError(f"{image_name}/{patches_name}: {len(feats)} images for {n} texts")
        return np.ascontiguousarray(feats, dtype=np.float32)

    def finalize(self) -> None:
        self.matcher.close()


def model_params(args: dict) -> dict[str, str]:
    """The ``parameters`` of the model's config.pbtxt (``fbinfer.serve.repository``)."""
    config = json.loads(args["model_config"])
    return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}


def patch_array(name: str, a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(N, P, D) patch features from a tensor of N x (P, D), checked against the model's (P, D)."""
    feats = a.reshape(-1, *a.shape[-2:]) if a.ndim >= 2 else a
    if feats.ndim != 3 or feats.shape[1:] != shape:
        raise RequestError(f"{name}: shape {tuple(a.shape)}, expected (N, {shape[0]}, {shape[1]})")
    return feats


def image_blobs(name: str, a: np.ndarray) -> list[bytes]:
    """The encoded images of a BYTES tensor; an empty one is refused."""
    blobs = [b if isinstance(b, bytes) else bytes(b) for b in a.ravel()]
    if not all(blobs):
        raise RequestError(f"{name}: an image is empty")
    return blobs


def _optional(pb, request, name: str) -> np.ndarray | None:
    t = pb.get_input_tensor_by_name(request, name)
    return None if t is None else t.as_numpy()


def _texts(pb, request, name: str) -> list[str]:
    t = _optional(pb, request, name)
    if t is None:
        raise RequestError(f"{name} is missing")
    return _strings(t, name)


def _strings(array: np.ndarray, name: str) -> list[str]:
    """UTF-8 strings of a BYTES tensor; an empty one is refused (a caption with no words matches nothing)."""
    out = []
    for i, b in enumerate(array.ravel()):
        try:
            s = b.decode("utf-8") if isinstance(b, bytes) else str(b)
        except UnicodeDecodeError:
            raise RequestError(f"{name}[{i}] is not UTF-8 text") from None
        if not s.strip():
            raise RequestError(f"{name}[{i}] is empty")
        out.append(s)
    return out


def _error(pb, e: Exception):
    """An error response: HTTP 400 / gRPC INVALID_ARGUMENT with the message (the request was wrong, not the server)."""
    code = getattr(pb.TritonError, "INVALID_ARG", None)
    return pb.InferenceResponse(output_tensors=[], error=pb.TritonError(str(e), code) if code is not None else pb.TritonError(str(e)))
