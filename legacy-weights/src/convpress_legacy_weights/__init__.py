"""Superseded convpress codec weights (data only): see this package's README.

convpress finds the ``codec`` folder next to this file with ``importlib.util.find_spec`` and
never imports code from here.
"""
