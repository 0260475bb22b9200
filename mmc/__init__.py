"""mmc: scaling limits of multi-model collaboration."""

__version__ = "0.1.0"
