"""The bundle: a folder of graphs and engines with its manifest, and the graphs' I/O contract."""
from fbinfer.bundle.folder import FORMAT_VERSION, TARGETS, Bundle, engine_file, graph_key, not_a_bundle

__all__ = ["FORMAT_VERSION", "TARGETS", "Bundle", "engine_file", "graph_key", "not_a_bundle"]
