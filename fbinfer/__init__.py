"""fbinfer: FashionBERT from training to served engines, with the ranking drift of every step measured.

    import fbinfer
    matcher = fbinfer.load("model.bundle")          # or model.pt, or bundle/engine.fp16.plan
    matcher.rank("black leather ankle boots", ["a.jpg", "b.jpg"], k=1)
"""

__version__ = "0.1.0"


def load(path, backend=None, device=None, precision=None, batch_size: int = 64, verify: bool = True, **options):
    """A Matcher over a checkpoint, a bundle folder or a TensorRT engine (see fbinfer.runtime.load:
    its arguments, and ``options`` for a backend's own settings). Imported lazily: ``import fbinfer``
    stays cheap."""
    from fbinfer.runtime.load import load as _load

    return _load(path, backend=backend, device=device, precision=precision, batch_size=batch_size, verify=verify, **options)


def load_index(path, model=None, backend=None):
    """A searchable catalogue index (``fbinfer.search.index.CatalogIndex``): ``idx.search(text=..., image=...,
    k=..., rerank=matcher, depth=...)``. ``model``: an embedding bundle or embed.pt to embed queries with
    (default: the one that built it; its sha256 must match)."""
    from fbinfer.search.embedder import open_embedder
    from fbinfer.search.index import CatalogIndex

    return CatalogIndex(path, open_embedder(model, backend) if model else None, backend)
