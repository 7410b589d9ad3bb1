"""Offline steps after export: TensorRT engines from a bundle's graphs."""
