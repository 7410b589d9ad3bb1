"""Serving a bundle with NVIDIA Triton Inference Server: the model repository, the Python-backend
model that runs fbinfer's runtime, and the server process (``fbinfer serve``)."""
