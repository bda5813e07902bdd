"""Rejection sampling on Ray actors (``guardrl reject``)."""
