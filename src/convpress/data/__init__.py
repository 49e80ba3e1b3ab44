"""Bundled datasets (offline) and loaders for user folders."""
