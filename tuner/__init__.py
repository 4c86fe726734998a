"""tuner: find better socket and kernel network settings for a workload, prove it, write a profile."""

__version__ = "0.1.0"

__all__ = ["__version__"]
