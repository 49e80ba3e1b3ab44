"""The package version (also ``convpress.__version__``), recorded in the files convpress writes."""

__version__ = "0.1.0"
"""The version of convpress (PEP 440), written into the files it makes."""
