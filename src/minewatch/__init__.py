"""minewatch: find cryptocurrency mining where it should not be."""

__version__ = "0.1.0"
