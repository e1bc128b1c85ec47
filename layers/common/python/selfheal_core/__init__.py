"""Shared runtime code for the Selfheal agents (shipped in the common Lambda layer)."""
