"""A hermetic, cached build orchestrator for families of container images."""

__version__ = "0.1.0"
