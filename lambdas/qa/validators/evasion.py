"""Static refusal of fixes that could behave one way under test and another in production.

A fix is code QA runs, so it can look at the run itself: ask whether pytest is loaded
(`"pytest" in sys.modules`, PYTEST_CURRENT_TEST), read its caller's frame, hook tracing or the
import system, walk live objects, end the interpreter before pytest reports, build code at run
time, patch the builtins, or ship a module that replaces one of the standard library or the
test tooling. None of that is needed to fix a bug, and any of it can forge a green run, so a
fix that *adds* one is refused before anything runs. Uses the project already has are counted
and allowed (only what the fix adds is judged); docstrings are not code. The new tests get the
same checks, except that they may name pytest.

It also refuses reads of the process's context (environment, arguments, working directory,
`__file__`, /proc) a fix adds: they differ between a test run and production by construction.
And a fix may not import anew a standard module beyond computation (`COMPUTATION_MODULES`) that
the project's code does not import already, nor patch a library module's attributes.

This is a deliberately narrow list, read from the syntax tree: it catches the ways seen and the
obvious spellings, not every spelling (a computed attribute of a watched module is refused for
that reason). The isolation of the runner, not this list, is what contains the code.
"""

from __future__ import annotations

import ast
import functools
import importlib
import io
import sys
import tokenize
import types
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

# Modules that would take the place of the standard library or the test tooling when a new file
# of that name lands on a sys.path entry (a directory that is no package: the project root, src/).
SHADOWED = frozenset(sys.stdlib_module_names) | {
    "pytest",
    "_pytest",
    "py",
    "pluggy",
    "iniconfig",
    "packaging",
    "conftest",
    "sitecustomize",
    "usercustomize",
}

_TOOLING = "names the test tooling or QA"
_IMPORTS = "reads or changes the import system"
_FRAMES = "inspects the call stack"
_TRACING = "hooks tracing or profiling"
_GC = "walks live objects"
_EXIT = "ends the interpreter"
_DYNAMIC = "runs dynamically built code"
_BUILTINS = "reaches into the builtins"
_NATIVE = "loads native code"
_COMPUTED = "reads a module's attribute by a computed name"
_PATCHES = "patches a library module"
_CONTEXT = "reads the process's context (environment, arguments, directory, file location)"
_INTROSPECTION = "reaches the interpreter's internals through a special attribute"
# Special attributes that lead from any object to the builtins, a module's globals, the class tree
# or the import system (`print.__self__.__import__`, `object.__subclasses__()`, `f.__globals__`):
# routes around every name this scan tracks, and no bug fix needs them.
_INTERNALS = frozenset(
    {
        "__builtins__", "__globals__", "__self__", "__subclasses__", "__bases__", "__base__", "__mro__",
        "__dict__", "__loader__", "__spec__", "__code__", "__closure__", "__func__", "__traceback__",
        "__import__", "__reduce__", "__reduce_ex__", "__getattribute__", "__module__", "__frame__",
        "__wrapped__", "__defaults__", "__kwdefaults__",
    }
)  # fmt: skip
# What a test may read of them: `f.__wrapped__` is how a test checks a `functools.wraps` fix.
_TEST_READS = frozenset({"__wrapped__"})
_MODULE_VALUE = "hands a module around as a value"
_SOURCE = "reads the code's source text (a test checks what code does, not how it is written)"
_NAMESPACE = "reads or changes a module's namespace"
_TESTS_READ = "reads the project's tests"
_UNREADABLE = "is not Python QA can read as the interpreter will"
_CAPABILITY = "imports a module the project's code does not use and no fix needs"

# What a fix may import anew without the project using it already: computation only. The rest of
# the standard library reaches the interpreter, the process, the files or the network (atexit,
# posix, pickle, runpy, importlib, weakref.finalize, logging's handlers, ...), which is how a fix
# would forge a run; one the project's own code imports is allowed (only what the fix adds is judged).
COMPUTATION_MODULES = frozenset(
    {
        "__future__", "abc", "array", "ast", "base64", "binascii", "bisect", "bz2", "calendar", "cmath",
        "collections", "colorsys", "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib",
        "email", "enum", "errno", "fnmatch", "fractions", "functools", "graphlib", "gzip", "hashlib", "heapq", "hmac",
        "html", "http", "io", "ipaddress", "itertools", "json", "keyword", "logging", "lzma", "math", "numbers",
        "operator", "posixpath", "pprint", "random", "re", "reprlib", "secrets", "shlex", "statistics",
        "string", "struct", "textwrap", "time", "typing", "unicodedata", "urllib", "uuid", "warnings", "zlib",
        "zoneinfo",
    }
)  # fmt: skip

# Modules beyond computation a fix may import anew for these attributes only: path arithmetic,
# interpreter constants (not sys.stdin/stdout/stderr: pytest replaces them), type predicates, locks.
# Any other use (`os.system`, `sys.exit`, `inspect.stack`, `threading.Thread`, the module as a
# value) is refused as before.
LIMITED_MODULES = {
    "os": frozenset(
        {
            "path",
            "sep",
            "altsep",
            "extsep",
            "pathsep",
            "linesep",
            "curdir",
            "pardir",
            "devnull",
            "fspath",
            "fsencode",
            "fsdecode",
            "PathLike",
            "SEEK_SET",
            "SEEK_CUR",
            "SEEK_END",
        }
    ),
    "sys": frozenset(
        {
            "maxsize",
            "maxunicode",
            "version_info",
            "hexversion",
            "platform",
            "byteorder",
            "float_info",
            "int_info",
            "hash_info",
            "getrecursionlimit",
            "getsizeof",
            "getdefaultencoding",
            "getfilesystemencoding",
        }
    ),
    "inspect": frozenset(
        {
            "isclass",
            "isfunction",
            "ismethod",
            "isroutine",
            "isbuiltin",
            "isgenerator",
            "isgeneratorfunction",
            "iscoroutine",
            "iscoroutinefunction",
            "isasyncgen",
            "isasyncgenfunction",
            "isawaitable",
            "isabstract",
            "isdatadescriptor",
            "ismethoddescriptor",
            "ismodule",
            "signature",
            "Signature",
            "Parameter",
            "BoundArguments",
            "getfullargspec",
            "getdoc",
            "cleandoc",
            "getmro",
        }
    ),
    "types": frozenset(
        {
            "SimpleNamespace",
            "MappingProxyType",
            "FunctionType",
            "LambdaType",
            "MethodType",
            "BuiltinFunctionType",
            "BuiltinMethodType",
            "GeneratorType",
            "CoroutineType",
            "AsyncGeneratorType",
            "ModuleType",
            "NoneType",
            "NotImplementedType",
            "EllipsisType",
            "GenericAlias",
            "UnionType",
            "DynamicClassAttribute",
            "new_class",
            "resolve_bases",
            "coroutine",
        }
    ),
    "threading": frozenset({"Lock", "RLock", "Condition", "Semaphore", "BoundedSemaphore", "Event", "local"}),
}
# Modules an attribute of that name reaches on whatever object it is read (`lg.sys`, `x._os`, with
# `lg = logging`): no ordinary object has one, so the scan need not know what `lg` is.
# Not `os` or `gc`: `device.os`, `config.gc` are ordinary attributes.
_REACHED_BY_NAME = frozenset(
    {"sys", "_sys", "_os", "_gc", "builtins", "importlib", "ctypes", "subprocess", "_thread", "runpy", "marshal",
     "faulthandler", "pytest", "_pytest", "pluggy", "sitecustomize"}
)  # fmt: skip
# Parts of computation packages that reach the network or configure from outside the code.
_IO_SUBMODULES = frozenset(
    {"urllib.request", "urllib.robotparser", "http.client", "http.server", "http.cookiejar", "logging.handlers",
     "logging.config"}
)  # fmt: skip

# Attribute names distinctive enough to refuse on any object (`frame.f_back`, `os._exit`).
_ANY_ATTRIBUTE = {
    **dict.fromkeys(("_getframe", "_current_frames", "currentframe", "getouterframes", "getinnerframes"), _FRAMES),
    **dict.fromkeys(("f_back", "f_globals", "f_locals", "f_builtins", "tb_frame", "gi_frame", "cr_frame"), _FRAMES),
    **dict.fromkeys(("settrace", "setprofile", "gettrace", "getprofile", "addaudithook"), _TRACING),
    **dict.fromkeys(("settrace_all_threads", "setprofile_all_threads"), _TRACING),
    **dict.fromkeys(("get_objects", "get_referrers", "get_referents"), _GC),
    **dict.fromkeys(("meta_path", "path_hooks", "path_importer_cache"), _IMPORTS),
    "_exit": _EXIT,
    **dict.fromkeys(("getsource", "getsourcelines", "getsourcefile", "findsource", "getcomments"), _SOURCE),
    **dict.fromkeys(("SkipTest", "importorskip"), _TOOLING),
}
# Names refused only as attributes of these modules (`self.modules`, `parser.stack` are fine).
# Submodules the scan judges by their own attributes (`from os import path; path.abspath('.')`).
_SUBMODULES = frozenset({"os.path"})
# os.path's readers of the working directory or the home: `abspath(".")` is `getcwd()`.
_CWD_OR_HOME = ("abspath", "realpath", "relpath", "expanduser", "expandvars")
_MODULE_ATTRIBUTE = {
    "sys": {
        "modules": _IMPORTS,
        "monitoring": _TRACING,
        "__dict__": _COMPUTED,
        **dict.fromkeys(("argv", "orig_argv", "executable"), _CONTEXT),
    },
    "inspect": {"stack": _FRAMES, "trace": _FRAMES},
    "traceback": {"extract_stack": _FRAMES, "walk_stack": _FRAMES},
    "os": {
        "abort": _EXIT,
        "__dict__": _COMPUTED,
        **dict.fromkeys(
            ("environ", "environb", "getenv", "getenvb", "getcwd", "getcwdb", "getpid", "getppid"), _CONTEXT
        ),
    },
    "os.path": dict.fromkeys(_CWD_OR_HOME, _CONTEXT),
}
_WATCHED_MODULES = {"sys", "os", "inspect", "traceback", "gc", "builtins", "threading", "importlib"}
_BY_NAME = frozenset({"getattr", "setattr", "hasattr", "delattr", "vars"})
_BUILTIN_CALLS = {
    "exec": _DYNAMIC,
    "eval": _DYNAMIC,
    "compile": _DYNAMIC,
    "__import__": _IMPORTS,
    "breakpoint": _DYNAMIC,
}
_IMPORTED = {"builtins": _BUILTINS, "ctypes": _NATIVE, "_ctypes": _NATIVE, "pytest": _TOOLING, "_pytest": _TOOLING}
# pytest, and what only QA's runner has: its guard, its environment, its directories.
_TOOLING_WORDS = ("pytest", "selfheal_sandbox", "selfheal-run", "selfheal-guard", "sitecustomize")


@dataclass(frozen=True)
class _Finding:
    line: int
    end: int  # end column: of `a.b.c` the innermost part is found first
    category: str
    what: str


# Special attributes ordinary methods read on their own instance (`self.__dict__ == other.__dict__`,
# `type(self).__module__` in a repr): no further than `vars(x)` on any argument, which is allowed.
_ON_OWN_INSTANCE = frozenset({"__dict__", "__module__"})
_COMPARISONS = frozenset({"__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__"})


def _own_instance_reads(tree: ast.Module) -> set[int]:
    """The ids of `self.__dict__`, `type(self).__module__`, `self.__class__.__module__` (and
    `other.__dict__` in a comparison) inside methods of the module's classes."""
    reads: set[int] = set()
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for method in (m for m in cls.body if isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)):
            params = [a.arg for a in method.args.posonlyargs + method.args.args]
            mine = set(params[:2] if method.name in _COMPARISONS else params[:1])
            for node in ast.walk(method):
                if isinstance(node, ast.Attribute) and node.attr in _ON_OWN_INSTANCE and _names(node.value, mine):
                    reads.add(id(node))
    return reads


# The steps that take `__file__` to the module's directory (`dirname`, `Path(...).parent`, resolved or
# not), onto which a file name is then joined (`_files_beside_module`).
_TO_DIRECTORY = frozenset({"dirname", "abspath", "realpath", "normpath", "Path", "PurePath", "resolve", "absolute"})


def _files_beside_module(tree: ast.Module) -> set[int]:
    """The ids of `__file__` used only to name a file beside the module (and of the calls that take
    it to its directory): `os.path.join(os.path.dirname(__file__), name)`,
    `Path(__file__).resolve().parent / "data.txt"`, `Path(__file__).with_name(name)`, also through a
    name bound to that directory (`HERE = os.path.dirname(os.path.abspath(__file__))`) when every
    read of the name is such a join. The directory itself, compared or searched, is refused."""
    found: set[int] = set()
    directories: dict[str, set[int]] = {}  # HERE -> the ids its binding would exempt
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            root, steps = _unwrapped(node.value)
            if steps and isinstance(root, ast.Name) and root.id == "__file__":
                directories[node.targets[0].id] = {id(root), *steps}
    joined: set[int] = set()  # reads of a directory name that a join consumes
    for node in ast.walk(tree):
        root, steps = _unwrapped(_joined_base(node))
        if isinstance(root, ast.Name) and root.id == "__file__":
            found |= {id(root), *steps}
        elif isinstance(root, ast.Name) and root.id in directories:
            joined.add(id(root))
            found |= steps
    for name, ids in directories.items():
        reads = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Load)]
        if reads and all(id(n) in joined for n in reads):
            found |= ids
    return found


def _joined_base(node: ast.AST) -> ast.expr | None:
    """What a path is joined onto: `base / x`, `os.path.join(base, ...)`, `base.joinpath(x)`."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        return node.left
    if isinstance(node, ast.Call) and _called(node) == "join" and len(node.args) > 1:
        return node.args[0]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("joinpath", "with_name")
    ):
        return node.func.value if node.args else None
    return None


def _unwrapped(node: ast.expr | None) -> tuple[ast.expr | None, set[int]]:
    """`node` without the steps that take a path to its directory (`dirname`, `abspath`, `Path`,
    `.parent`, `.resolve()`), and the ids of those steps' functions."""
    steps: set[int] = set()
    while node is not None:
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            steps.add(id(node))
            node = node.value
        elif isinstance(node, ast.Call) and _called(node) in _TO_DIRECTORY and len(node.args) <= 1:
            steps.add(id(node.func))  # `os.path.abspath(__file__)` reads no working directory
            node = node.args[0] if node.args else getattr(node.func, "value", None)
        else:
            break
    return node, steps


def _called(call: ast.Call) -> str:
    return call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", "")


def _names(node: ast.expr, mine: set[str]) -> bool:
    """Is `node` one of `mine`, its `type(...)` or its `.__class__`?"""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "type"
        and len(node.args) == 1
    ):
        node = node.args[0]
    elif isinstance(node, ast.Attribute) and node.attr == "__class__":
        node = node.value
    return isinstance(node, ast.Name) and node.id in mine


@functools.cache
def _names_module(parent: str, attr: str) -> bool:
    """Whether `parent.attr` may be a standard module (`logging.os`, `random._os`): not a class or
    function that shares a module's name (`datetime.datetime`, `time.time`, `copy.copy`). A parent
    among the computation modules is imported to look; any other is judged by the name alone."""
    if attr.lstrip("_") not in sys.stdlib_module_names:
        return False
    if parent.split(".")[0] not in COMPUTATION_MODULES:
        return True
    try:
        value = getattr(importlib.import_module(parent), attr, None)
    except ImportError:
        return True
    return value is None or isinstance(value, types.ModuleType)


class _Scan(ast.NodeVisitor):
    """Every watched construct of one module, in source order."""

    def __init__(self, tree: ast.Module, *, is_test: bool, unreadable: frozenset[str] = frozenset()) -> None:
        self.is_test = is_test
        # Files this module may not name: for code, the project's tests and test directories (their
        # expected values); for a test, the project's code files (their source text).
        self.unreadable = unreadable
        self.io_modules: set[str] = set()  # `urllib.request`: a computation package's network part
        # Expressions read through (`m.x`, `getattr(m, ...)`): where a module may stand.
        self.read_through = {
            id(n.value) if isinstance(n, ast.Attribute) else id(n.args[0])
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute)
            or (isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in _BY_NAME and n.args)
        }
        self.found: list[_Finding] = []
        self.aliases: dict[str, str] = {}  # local name -> module (`import sys as s`)
        self.imported: dict[str, str] = {}  # local name -> the module it came from (`from m import x`)
        self.own: set[str] = set()  # functions and classes it defines (its own `compile`); `eval = eval` is no def
        self.docstrings: set[int] = set()
        self.reached: set[str] = set()  # standard modules reached through attributes (`typing.sys`)
        self.own_instance_reads = _own_instance_reads(tree)
        self.beside_module = _files_beside_module(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    # `import os.path as p` binds os.path itself; `import os.path` binds os
                    bound = alias.name if alias.asname and alias.name in _SUBMODULES else alias.name.split(".")[0]
                    self.aliases[alias.asname or alias.name.split(".")[0]] = bound
                    self._note_io(alias.name)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                self._note_io(node.module)
                for alias in node.names:  # `from unittest import TestCase`: a library's object
                    self._note_io(f"{node.module}.{alias.name}")
                    self.imported[alias.asname or alias.name] = node.module.split(".")[0]
                    if _names_module(node.module, alias.name):  # `from logging import os`: os
                        self.aliases[alias.asname or alias.name] = alias.name.lstrip("_")
                    elif f"{node.module}.{alias.name}" in _SUBMODULES:  # `from os import path`
                        self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.own.add(node.name)
            elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
                self.docstrings.add(id(node.value))  # a bare string statement does nothing
        self.visit(tree)

    def _note_io(self, dotted: str) -> None:
        self.io_modules.update(m for m in _IO_SUBMODULES if dotted == m or dotted.startswith(m + "."))

    def _add(self, node: ast.AST, category: str, what: str) -> None:
        if category in (_TOOLING, _CONTEXT) and self.is_test:
            return  # a test may import and name pytest, and find its files (it runs apart from run 1)
        self.found.append(_Finding(getattr(node, "lineno", 0), getattr(node, "end_col_offset", 0), category, what))

    def _module_of(self, node: ast.expr) -> str | None:
        """The module an expression names: an import's alias, a standard module reached through
        another one's attribute (`typing.sys`, `random._os`: the same module, no import needed), or
        another attribute of a module, named by its path (`email.utils`), so the chain goes on."""
        if isinstance(node, ast.Name):
            return self.aliases.get(node.id)
        if isinstance(node, ast.Attribute):
            return self._reached(self._module_of(node.value), node.attr)
        if (  # getattr(x, "sys"), as x.sys
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(name := _folded(node.args[1]), str)
        ):
            return self._reached(self._module_of(node.args[0]), name)
        return None

    def _reached(self, base: str | None, attr: str) -> str | None:
        reached = attr.lstrip("_")
        if (base is not None and _names_module(base, attr)) or attr in _REACHED_BY_NAME:
            self.reached.add(reached)
            return reached
        if base is None:
            return None
        self._note_io(f"{base}.{attr}")
        return f"{base}.{attr}"

    def _attribute(self, node: ast.AST, module: str | None, attr: str) -> None:
        if module == "builtins":
            self._add(node, _BUILTINS, f"builtins.{attr}")
        elif attr in _MODULE_ATTRIBUTE.get(module or "", {}):
            self._add(node, _MODULE_ATTRIBUTE[module or ""][attr], f"{module}.{attr}")
        elif attr in _ANY_ATTRIBUTE:
            self._add(node, _ANY_ATTRIBUTE[attr], f"{module}.{attr}" if module else f".{attr}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            top = alias.name.split(".")[0]
            if top in _IMPORTED:
                self._add(node, _IMPORTED[top], f"import {alias.name}")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        top = (node.module or "").split(".")[0]
        if node.level == 0 and top in _IMPORTED:
            self._add(node, _IMPORTED[top], f"from {node.module} import ...")
        elif node.level == 0:
            for alias in node.names:
                self._attribute(node, node.module if node.module in _MODULE_ATTRIBUTE else top, alias.name)

    def _library_root(self, node: ast.expr) -> str | None:
        """The standard or tooling module an attribute chain starts from (`unittest.TestCase.x`)."""
        while isinstance(node, ast.Attribute | ast.Subscript):
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        module = self.aliases.get(node.id) or self.imported.get(node.id)
        return module if module in SHADOWED else None

    def _patched(self, target: ast.expr) -> None:
        if isinstance(target, ast.Attribute) and (module := self._library_root(target.value)):
            self._add(target, _PATCHES, f"{module}: .{target.attr} =")
        elif isinstance(target, ast.Tuple | ast.List):
            for element in target.elts:
                self._patched(element)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._patched(target)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._patched(node.target)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._patched(target)
        self.generic_visit(node)

    def _module_value(self, node: ast.expr, module: str | None) -> None:
        """A standard or tooling module used as a value (`lg = logging`, `[logging][0]`, passed
        to a function): from there on the scan cannot tell what is reached through it."""
        if (
            not self.is_test
            and (module in SHADOWED or module in _SUBMODULES)
            and isinstance(getattr(node, "ctx", None), ast.Load)
            and id(node) not in self.read_through
        ):
            self._add(node, _MODULE_VALUE, module)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._module_value(node, self._module_of(node))  # also notes a module it reaches (`typing.sys`)
        if (
            node.attr in _INTERNALS
            and id(node) not in self.own_instance_reads
            and not (self.is_test and node.attr in _TEST_READS)
        ):
            self._add(node, _INTROSPECTION, f".{node.attr}")
        if node.attr == "__file__":  # where a module lives: context in code, its source text in a test
            self._add(node, _SOURCE if self.is_test else _CONTEXT, ".__file__")
        if node.attr in ("cwd", "home") and self._library_root(node.value) == "pathlib":
            self._add(node, _CONTEXT, f"Path.{node.attr}")
        if id(node) not in self.beside_module:
            self._attribute(node, self._module_of(node.value), node.attr)
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        self._module_value(node, self.aliases.get(node.id))
        if node.id == "__builtins__":
            self._add(node, _BUILTINS, "__builtins__")
        elif node.id == "__file__" and id(node) not in self.beside_module:
            self._add(node, _CONTEXT, "__file__")  # "/var/task" in production, a run directory under test
        elif node.id in _BUILTIN_CALLS and node.id not in self.own | self.aliases.keys() | self.imported.keys():
            self._add(node, _BUILTIN_CALLS[node.id], node.id)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        patching = isinstance(func, ast.Name) and func.id in ("setattr", "delattr") and node.args
        if patching and (module := self._library_root(node.args[0])):
            self._add(node, _PATCHES, f"{getattr(func, 'id', '')}({module}...)")
        if isinstance(func, ast.Name) and _reads_namespace(node) and func.id not in self.own | set(self.aliases):
            self._add(node, _NAMESPACE, f"{func.id}()")
        if isinstance(func, ast.Name) and func.id in _BY_NAME:
            module = self._module_of(node.args[0]) if node.args else None
            name_arg = node.args[1] if len(node.args) > 1 and func.id != "vars" else None
            name = _folded(name_arg) if name_arg is not None else None
            if name is not None:  # `getattr(x, "tb_frame")` is `x.tb_frame`
                if name in _INTERNALS:
                    self._add(node, _INTROSPECTION, f"{func.id}(..., {name!r})")
                if module is not None and name.lstrip("_") in sys.stdlib_module_names:
                    self.reached.add(name.lstrip("_"))  # `getattr(logging, "sys")`
                self._attribute(node, module, name)
            elif module is not None:  # a module's attribute by a name built at run time, or all of them
                self._add(node, _COMPUTED, f"{func.id}({module}, ...)")
        if isinstance(func, ast.Attribute) and (func.attr == "join" or func.attr in _STR_METHODS):
            self._text(node, _folded(node))
        self.generic_visit(node)

    def visit_arg(self, node: ast.arg) -> None:
        self._annotation(node.annotation)
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._annotation(node.returns)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]  # noqa: N815 - the visitor's naming

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._patched(node.target)
        self._annotation(node.annotation)
        self.generic_visit(node)

    def _annotation(self, annotation: ast.expr | None) -> None:
        """A string annotation is code `typing.get_type_hints` evaluates: scanned as code."""
        if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
            try:
                parsed = ast.parse(annotation.value.strip(), mode="eval")
            except (SyntaxError, ValueError, RecursionError, MemoryError):
                return
            for node in ast.walk(parsed):
                ast.copy_location(node, annotation)
            self.visit(parsed)

    def visit_BinOp(self, node: ast.expr) -> None:
        self._text(node, _folded(node))  # "_py" + "test": the words, however the string is built
        self.generic_visit(node)

    # f-strings and slices of constants fold the same way.
    visit_JoinedStr = visit_Subscript = visit_BinOp  # type: ignore[assignment]  # noqa: N815 - the visitor's naming

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value.decode(errors="replace") if isinstance(node.value, bytes) else node.value
        self._text(node, value if isinstance(value, str) and id(node) not in self.docstrings else None)

    def _text(self, node: ast.AST, text: str | None) -> None:
        if not text:
            return
        if any(name in text for name in self.unreadable if name.endswith(".py") or text.startswith(name + "/")):
            self._add(node, _SOURCE if self.is_test else _TESTS_READ, repr(text[:60]))
        folded = text.lower()
        if any(word in folded for word in _TOOLING_WORDS):
            self._add(node, _TOOLING, repr(text[:60]))
        # vars(m)["__builtins__"], getattr(x, "__GLOBALS__".lower()), attrgetter("__globals__.get"),
        # "{0.__globals__[sys]}": a special attribute named in a string is reached by name.
        elif any(internal in folded for internal in _INTERNALS):
            self._add(node, _INTROSPECTION, repr(text[:60]))
        elif "/proc/" in text:  # /proc/self/cmdline, /proc/self/environ: the process's context
            self._add(node, _CONTEXT, repr(text[:60]))


# Methods of a constant string that make another constant string.
_STR_METHODS = frozenset(
    {"lower", "upper", "casefold", "title", "capitalize", "swapcase", "strip", "lstrip", "rstrip", "replace", "format"}
)


def _folded_args(node: ast.expr) -> str | tuple[str, ...] | None:
    """The right side of `%`: one folded string, or a tuple of them."""
    if isinstance(node, ast.Tuple):
        parts = [_folded(e) for e in node.elts]
        return tuple(p for p in parts if p is not None) if None not in parts else None
    return _folded(node)


def _reads_namespace(call: ast.Call) -> bool:
    """`globals()`, `locals()`, `vars()`: the calling module's or function's names as a dict."""
    name = call.func.id if isinstance(call.func, ast.Name) else ""
    return name in ("globals", "locals") or (name == "vars" and not call.args)


def _folded(node: ast.expr) -> str | None:
    """The string an expression of constants makes (`"_py" + "test"`, `"_py%s" % "test"`,
    `"TEST".lower()`, `"tsetyp"[::-1]`, `"".join(["a", "b"])`, an f-string of constants), else None."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return _folded_operation(node)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return _folded_method(node, node.func)
    if isinstance(node, ast.JoinedStr):
        parts = [_folded(v.value if isinstance(v, ast.FormattedValue) else v) for v in node.values]
        return "".join(p for p in parts if p is not None) if None not in parts else None
    if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
        text = _folded(node.value)
        given = (node.slice.lower, node.slice.upper, node.slice.step)
        bounds = [b.value if isinstance(b, ast.Constant) and isinstance(b.value, int) else b for b in given]
        if text is None or any(isinstance(b, ast.AST) for b in bounds):
            return None
        return text[slice(*bounds)]  # type: ignore[arg-type]
    return None


def _folded_operation(node: ast.BinOp) -> str | None:
    left = _folded(node.left)
    right = _folded_args(node.right) if isinstance(node.op, ast.Mod) else _folded(node.right)
    if left is None or right is None:
        return None
    try:
        return left % right if isinstance(node.op, ast.Mod) else left + right  # type: ignore[operator]
    except (TypeError, ValueError, KeyError):
        return None


def _folded_method(node: ast.Call, method: ast.Attribute) -> str | None:
    text = _folded(method.value)
    if text is None or node.keywords:
        return None
    if method.attr == "join" and len(node.args) == 1 and isinstance(node.args[0], ast.List | ast.Tuple):
        parts = [_folded(e) for e in node.args[0].elts]
        return text.join(p for p in parts if p is not None) if None not in parts else None
    args = [_folded(a) for a in node.args]
    if method.attr not in _STR_METHODS or None in args:
        return None
    try:
        return str(getattr(text, method.attr)(*args))
    except (TypeError, ValueError, IndexError, KeyError):
        return None


def _encoding(text: str) -> str:
    """The encoding Python reads the UTF-8 file QA writes with (its own algorithm: a BOM, a coding
    declaration on line 1 or 2, by the interpreter's notion of a line)."""
    try:
        # Python's reader ends a line at a lone CR too; BytesIO.readline only at LF.
        lines = text.replace("\r\n", "\n").replace("\r", "\n")
        return tokenize.detect_encoding(io.BytesIO(lines.encode("utf-8", "surrogatepass")).readline)[0]
    except (SyntaxError, LookupError, UnicodeError):
        return "unreadable"


def _read_otherwise(before: str | None, after: str) -> bool:
    """Will the interpreter read the file as other text than QA scans, by a declaration the fix
    adds? `# coding: utf-7` turns what QA reads as a comment into code. One the file had is kept
    (an old project's latin-1), unless it is one that can turn plain ASCII into other text."""
    encoding = _encoding(after)
    if encoding in ("utf-8", "utf-8-sig"):
        return False
    kept = before is not None and _encoding(before) == encoding
    return not kept or encoding == "unreadable" or not _ascii_safe(encoding)


def _ascii_safe(encoding: str) -> bool:
    """Does the codec read ASCII bytes as themselves (so a comment stays a comment)?"""
    sample = bytes(range(128))
    try:
        return sample.decode(encoding) == sample.decode("ascii")
    except (UnicodeError, LookupError):
        return False


def _parse(text: str) -> ast.Module | None:
    try:
        return ast.parse(text.removeprefix("\ufeff"))  # as Python reads a file: past its byte-order mark
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None  # the compile step refuses it


def _scan(text: str, *, is_test: bool, unreadable: frozenset[str] = frozenset()) -> list[_Finding]:
    try:
        tree = ast.parse(text.removeprefix("\ufeff"))
        return sorted(_Scan(tree, is_test=is_test, unreadable=unreadable).found, key=lambda f: (f.line, f.end))
    except (SyntaxError, ValueError):
        return []  # the compile step refuses it
    except (RecursionError, MemoryError):  # compile() takes deeper nesting than a recursive walk
        return [_Finding(1, 0, _UNREADABLE, "nested too deeply to check")]


def _imports(text: str | None) -> set[str]:
    """The top-level modules a file imports absolutely (relative imports are the project's own),
    and the standard modules it reaches through another's attribute (`typing.sys`, `random._os`)."""
    tree = _parse(text) if text is not None else None
    if tree is None:
        return set()
    try:
        scan = _Scan(tree, is_test=True)
    except RecursionError:
        return set()  # judged as no import: what the fix adds is refused by `_scan` anyway
    return set(scan.aliases.values()) | set(scan.imported.values()) | scan.reached | scan.io_modules


def _uses_only(text: str, module: str, allowed: frozenset[str]) -> bool:
    """Does the file reach `module` only by importing it and reading `allowed` attributes
    (`import os` then `os.path.join`, `from os.path import join`, `from sys import maxsize`)?"""
    tree = _parse(text)
    taken = _taken(tree, module) if tree is not None else []
    if tree is None or not taken or any(part is not None and part not in allowed for part, _ in taken):
        return False  # not imported (reached through `logging.os`), or a part that is not allowed
    bound = {name for part, name in taken if part is None}
    parents = {id(child): parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
    return all(
        isinstance(parent := parents.get(id(node)), ast.Attribute) and parent.attr in allowed
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and node.id in bound and isinstance(node.ctx, ast.Load)
    )


def _taken(tree: ast.Module, module: str) -> list[tuple[str | None, str]]:
    """What the file's imports take of `module`: (the attribute taken, or None for the module
    itself, the local name)."""
    taken: list[tuple[str | None, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in (a for a in node.names if a.name.split(".")[0] == module):
                parts = alias.name.split(".")
                # `import os.path` binds `os`; `import os.path as p` binds the allowed part itself
                taken.append((parts[1], alias.asname or "") if len(parts) > 1 else (None, alias.asname or module))
                if len(parts) > 1 and not alias.asname:
                    taken.append((None, module))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == module:
            parts = (node.module or "").split(".")[1:]
            taken.extend(((parts or [a.name])[0], a.asname or a.name) for a in node.names)
    return taken


def _added(
    before: str | None, after: str, *, is_test: bool, unreadable: frozenset[str] = frozenset()
) -> _Finding | None:
    """The first construct `after` has more of than `before` (a move is no addition)."""
    if _read_otherwise(before, after):
        return _Finding(1, 0, _UNREADABLE, f"a coding declaration of {_encoding(after)}")
    scanned = functools.partial(_scan, is_test=is_test, unreadable=unreadable)
    had = Counter((f.category, f.what) for f in scanned(before)) if before is not None else Counter()
    for finding in scanned(after):
        key = (finding.category, finding.what)
        if had[key] > 0:
            had[key] -= 1
        else:
            return finding
    return None


def _test_names(paths: list[str]) -> frozenset[str]:
    """How code could name the tests to read them: each test module's path and file name, and
    the test directories."""
    names: set[str] = set()
    for path in paths:
        parts = path.split("/")
        if path.endswith(".py") and parts[-1] != "__init__.py":
            names.update((path, parts[-1]))
        names.update("/".join(parts[: i + 1]) for i, part in enumerate(parts[:-1]) if part in ("tests", "test"))
    return frozenset(names)


def shadowed_module(path: str, tree: dict[str, str]) -> str | None:
    """The module name a new file at `path` would take over, when it lands on a sys.path entry."""
    if not path.endswith(".py"):
        return None
    parts = path.removesuffix(".py").split("/")
    for i, name in enumerate(parts):
        if i > 0 and "/".join(parts[:i]) + "/__init__.py" in tree:
            return None  # inside a package: `pkg.json`, not `json`
        module = i == len(parts) - 1 and name != "__init__"
        package = "/".join(parts[: i + 1]) + "/__init__.py" in tree  # a directory alone is a namespace
        if (module or package) and name in SHADOWED:
            return name
    return None


def evasion(
    code_files: dict[str, str],
    patched: dict[str, str],
    new_tests: dict[str, str],
    project_test: Callable[[str], bool] = lambda _path: False,
) -> str | None:
    """`path:line: what it does` for the first thing the fix adds that could tell a test run
    from production (or take over a standard module), else None. `project_test(path)`: a project
    file that is a test (what its tests import is no licence for the fix's code)."""
    for path in sorted(p for p in patched if p not in code_files):
        if (name := shadowed_module(path, patched)) is not None:
            return f"{path}: a new module would replace {name!r} of the standard library or the test tooling"
    changed = [(p, patched[p], False) for p in sorted(patched) if p.endswith(".py") and code_files.get(p) != patched[p]]
    checked = [*changed, *((p, t, True) for p, t in sorted(new_tests.items()))]
    tests = _test_names([*(p for p in code_files if project_test(p)), *new_tests])
    sources = frozenset(
        name for p in code_files if p.endswith(".py") and not project_test(p) for name in (p, p.split("/")[-1])
    )
    for path, text, is_test in checked:
        if (
            found := _added(code_files.get(path), text, is_test=is_test, unreadable=sources if is_test else tests)
        ) is not None:
            return f"{path}:{found.line}: {found.category} ({found.what})"
    # The fix's code runs inside the project's own test run (run 1), so it may not bring a
    # capability the project's code never had. (New tests run apart from it, in runs 2 and 3.)
    in_code = set().union(*(_imports(t) for p, t in code_files.items() if p.endswith(".py") and not project_test(p)))
    for path, text, _ in changed:
        for module in sorted(_imports(text) - COMPUTATION_MODULES - in_code):
            if module in LIMITED_MODULES and _uses_only(text, module, LIMITED_MODULES[module]):
                continue
            if module in SHADOWED or module in _IO_SUBMODULES:
                return f"{path}: {_CAPABILITY} ({module})"
    return None
