"""The package's version, for whoever needs it without importing the package's facade."""

__version__ = "0.1.0"
