"""The package version (also ``convpress.__version__``), recorded in the files convpress writes."""

__version__ = "0.1.0"
