"""fbinfer: FashionBERT from training to served engines, with the ranking drift of every step measured."""

__version__ = "0.1.0"
