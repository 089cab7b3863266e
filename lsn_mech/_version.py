"""The library version, recorded in the provenance of every saved result."""

__version__ = "0.1.0"
