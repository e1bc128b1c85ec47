"""Project file paths and unified-diff file headers, read one way by the Manager (a reporter's
files), the Engineer (the model's), QA (checking and applying them) and the QA runner (writing them)."""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def path_problem(path: str) -> str | None:
    """Why `path` is not a project file path in its one canonical spelling, or None.

    Relative and POSIX, no control character, no empty, `.` or `..` part (so no trailing or
    doubled `/`), no part that starts or ends with a space. Checks read a path as written while
    the file system writes it normalised: a second spelling of one file (`conftest.py/`,
    `./conftest.py`) would pass a check by name and land on the very file the check protects;
    a newline in a name would become a file header of its own in the patch a person applies.
    """
    drive = len(path) > 1 and path[1] == ":" and path[0].isalpha()
    if not path or _CONTROL.search(path) or "\\" in path or path.startswith(("/", "~")) or drive:
        return f"path {path[:200]!r} must be a non-empty relative POSIX path without control characters"
    if any(part in ("", ".", "..") or part != part.strip() for part in path.split("/")):
        return (
            f"path {path[:200]!r} must be a plain relative path inside the project: no empty, '.' or '..' "
            "part, none that starts or ends with a space, no trailing '/'"
        )
    return None


def header_path(line: str) -> str | None:
    """The path of a `--- ` or `+++ ` line, without git's a/ or b/ prefix; None for /dev/null."""
    path = unquoted(line[4:].split("\t")[0].strip())
    if path == "/dev/null":
        return None
    return path[2:] if path.startswith(("a/", "b/")) else path


_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}
_QUOTED_CHAR = re.compile(r'\\([0-7]{3}|[abtnvfr"\\])')


def unquoted(path: str) -> str:
    """git's C-quoted spelling of a path with special or non-ASCII bytes (`"caf\\303\\251.py"`)."""
    if len(path) < 2 or not (path.startswith('"') and path.endswith('"')):
        return path
    raw = _QUOTED_CHAR.sub(lambda m: chr(int(m[1], 8) if len(m[1]) == 3 else _C_ESCAPES[m[1]]), path[1:-1])
    try:
        return raw.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return path  # not git's quoting: left as written, and refused as a path if it is none


# What `diff -u name.orig name` calls the untouched copy.
_BACKUP_SUFFIXES = (".orig", ".old", ".bak", ".original", "~")


def section_paths(old_line: str, new_line: str) -> tuple[str | None, str | None]:
    """A file section's old and new paths, as the project path they both name:
    - `diff -ru buggy/ fixed/` (or `/abs/buggy/x.py /abs/fixed/x.py`) names one file by two trees:
      when the two paths differ in one directory only (and git's a/ b/ were not already
      stripped), the part below it is the path, as `patch -pN` would cut it;
    - `diff -u x.py.orig x.py` names it by its backup copy."""
    old, new = header_path(old_line), header_path(new_line)
    git_prefixed = old_line[4:].startswith(("a/", '"a/')) or new_line[4:].startswith(("b/", '"b/'))
    if old is not None and new is not None and old != new and not git_prefixed:
        for a, b in ((old, new), (new, old)):
            if a.startswith(b) and a[len(b) :] in _BACKUP_SUFFIXES:
                return b, b
        old_parts, new_parts = old.split("/"), new.split("/")
        differ = [i for i, (o, n) in enumerate(zip(old_parts, new_parts, strict=False)) if o != n]
        if len(old_parts) == len(new_parts) and len(differ) == 1 and differ[0] < len(old_parts) - 1:
            rest = "/".join(old_parts[differ[0] + 1 :])
            return rest, rest
    return old, new


def patch_lines(patch: str) -> list[str]:
    """A patch's lines as git reads them: split on LF only (a CRLF patch's CR dropped). Other
    characters `str.splitlines` breaks on stay inside the line, as they do for git."""
    lines = [line.removesuffix("\r") for line in patch.split("\n")]
    return lines[:-1] if lines and lines[-1] == "" else lines


def patch_paths(patch: str) -> list[str]:
    """Every path a patch's file headers name (old and new sides; /dev/null left out)."""
    lines = patch_lines(patch)
    return [
        path
        for i, line in enumerate(lines[:-1])
        if line.startswith("--- ") and lines[i + 1].startswith("+++ ")
        for path in section_paths(line, lines[i + 1])
        if path is not None
    ]
