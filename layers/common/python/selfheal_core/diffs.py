"""Unified-diff file headers, read one way by the Engineer (checking the model's patch) and by QA
(applying it)."""

from __future__ import annotations


def header_path(line: str) -> str | None:
    """The path of a `--- ` or `+++ ` line, without git's a/ or b/ prefix; None for /dev/null."""
    path = line[4:].split("\t")[0].strip()
    if path == "/dev/null":
        return None
    return path[2:] if path.startswith(("a/", "b/")) else path


def patch_paths(patch: str) -> list[str]:
    """Every path a patch's file headers name (old and new sides; /dev/null left out)."""
    return [
        path
        for line in patch.splitlines()
        if line.startswith(("--- ", "+++ ")) and (path := header_path(line)) is not None
    ]
