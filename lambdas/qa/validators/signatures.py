"""Calls the project's own code makes that none of the callee's definitions accepts.

A new test that fails on the original with `TypeError: render() got an unexpected keyword
argument 'quote'` proves nothing when only the test passes `quote` (the fix adds the parameter
and the test checks that it exists). It proves the bug when the project's own code passes it:
`render(text, quote=True)` in the original, against `def render(text)`. Read from the syntax
tree, by name; a call through `*args`/`**kwargs` is taken as accepted (nothing is claimed).
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass


@dataclass(frozen=True)
class _Signature:
    required: tuple[str, ...]  # positional parameters without a default, self included
    positional: tuple[str, ...]  # every positional parameter, self included
    keywords: frozenset[str]  # names a keyword may take (positional-or-keyword and keyword-only)
    star_args: bool
    star_kwargs: bool
    bound: bool  # a method called on an instance: its first parameter is supplied

    def accepts(self, given: int, keywords: frozenset[str]) -> bool:
        given += 1 if self.bound else 0
        if keywords - self.keywords and not self.star_kwargs:
            return False
        if given > len(self.positional) and not self.star_args:
            return False
        filled = set(self.positional[:given]) | keywords
        return all(name in filled for name in self.required)


@dataclass(frozen=True)
class _Call:
    name: str
    given: int
    keywords: frozenset[str]


def broken_calls(files: dict[str, str]) -> tuple[frozenset[str], frozenset[str]]:
    """The functions the code calls in a way none of their definitions accepts (a class's
    `__init__` too, when the call is the class's), and the keywords those calls pass that no
    definition takes."""
    signatures: dict[str, list[_Signature]] = {}
    calls: list[_Call] = []
    for text in files.values():
        found, called = _read(text)
        for name, sigs in found.items():
            signatures.setdefault(name, []).extend(sigs)
        calls.extend(called)
    functions: set[str] = set()
    keywords: set[str] = set()
    for call in calls:
        defined = signatures.get(call.name)
        if not defined or any(s.accepts(call.given, call.keywords) for s in defined):
            continue
        functions.update((call.name, "__init__") if call.name[:1].isupper() else (call.name,))
        keywords.update(k for k in call.keywords if not any(k in s.keywords or s.star_kwargs for s in defined))
    return frozenset(functions), frozenset(keywords)


@functools.lru_cache(maxsize=256)
def _read(text: str) -> tuple[dict[str, list[_Signature]], list[_Call]]:
    try:
        tree = ast.parse(text.removeprefix("\ufeff"))
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {}, []
    signatures: dict[str, list[_Signature]] = {}
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for method in (m for m in cls.body if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)):
            static = any(getattr(d, "id", None) == "staticmethod" for d in method.decorator_list)
            signatures.setdefault(method.name, []).append(_signature(method.args, bound=not static))
            if method.name == "__init__":  # `Money(a, b)` calls `Money.__init__(self, a, b)`
                signatures.setdefault(cls.name, []).append(_signature(method.args, bound=True))
    methods = {id(m) for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for m in c.body}
    for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
        if id(fn) not in methods:
            signatures.setdefault(fn.name, []).append(_signature(fn.args, bound=False))
    # A method is judged only on a receiver whose definitions these are: `self`, `cls`, a class of
    # the file or an imported module (`limits.get('floor', 0)` on a dict is not `Account.get`).
    receivers = {"self", "cls"} | {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            receivers.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    calls = [
        _Call(name, len(node.args), frozenset(k.arg for k in node.keywords if k.arg is not None))
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (name := _callee(node, receivers))
        and not any(isinstance(a, ast.Starred) for a in node.args)
        and all(k.arg is not None for k in node.keywords)
    ]
    return signatures, calls


def _callee(call: ast.Call, receivers: set[str]) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if (
        isinstance(call.func, ast.Attribute)
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id in receivers
    ):
        return call.func.attr
    return None


def _signature(args: ast.arguments, *, bound: bool) -> _Signature:
    positional = tuple(a.arg for a in [*args.posonlyargs, *args.args])
    required = positional[: len(positional) - len(args.defaults)]
    keywords = frozenset(a.arg for a in [*args.args, *args.kwonlyargs])
    return _Signature(required, positional, keywords, args.vararg is not None, args.kwarg is not None, bound)
