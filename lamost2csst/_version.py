"""The package version, in a leaf module: every layer may import it without importing the root package."""

__version__ = "0.1.0"
