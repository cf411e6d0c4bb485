"""quiltgen: config-driven synthetic object-detection datasets from cut-out photos and backgrounds."""

__version__ = "0.1.0"
