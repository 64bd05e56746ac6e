"""The modules of a package that a module imports, found by reading the source with `ast`, transitively.

A built-in backbone's feature-cache key digests the modules of `vip_backbones` its class can run
(`vipcli.plugins.plugin_source_files`): its own module and those it imports from the package, directly
or through each other, so an edit to another backbone's module leaves its entries alone. (vip's own
code, `vipcli`, is digested whole for every backbone: `package_source_digest`.) Every import statement
counts, at the top of a module or inside a function, and so do `importlib.import_module("name")`,
`__import__("name")` and `sys.modules["name"]` with a literal name. What the walker cannot name (a module
name computed at run time, code run from a file or a string, plugins looked up through entry points) is
listed by `dynamic_imports`: tests/test_source_imports.py fails on any such site in a built-in
backbone's modules that has not been reviewed.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

IMPORT_CALLS = ("import_module", "__import__")  # import the module named by their first argument
RUN_CALLS = ("exec", "eval", "compile")  # builtins that run code given as text (called by bare name)
# calls that load or run modules the walker cannot name: from a file, a spec, entry points, by path
LOADING_CALLS = ("reload", "spec_from_file_location", "spec_from_loader", "module_from_spec", "exec_module",
                 "load_module", "run_module", "run_path", "iter_modules", "walk_packages", "entry_points")
_PARSED: dict[tuple, ast.Module | None] = {}  # (path, size, mtime) -> its syntax tree


def package_folder(package: str) -> Path | None:
    """The folder of top-level package `package` (located without importing it), or None."""
    module = sys.modules.get(package)
    locations = list(getattr(module, "__path__", None) or []) if module is not None else []
    if not locations:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            return None
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) if locations else None


def module_file(name: str) -> Path | None:
    """The source file of module `name` (a package's `__init__.py`) by its path in its top-level package's
    folder, nothing imported; None when `name` is no module there (an attribute imported from a package)."""
    top, *rest = name.split(".")
    folder = package_folder(top)
    if folder is None:
        return None
    base = folder.joinpath(*rest)
    for candidate in (base / "__init__.py", base.with_name(base.name + ".py") if rest else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _tree(path: Path) -> ast.Module | None:
    """The syntax tree of `path` (parsed once per version of the file in a process); None if unreadable."""
    try:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in _PARSED:
            _PARSED[key] = ast.parse(path.read_bytes(), filename=str(path))
        return _PARSED[key]
    except (OSError, SyntaxError, ValueError):
        return None


def _literal(node) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _called_name(node: ast.Call) -> str:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _is_sys_modules(node) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "modules" and isinstance(node.value, ast.Name)
            and node.value.id == "sys")


def _named_import(node) -> str | None:
    """The module a call or subscript imports or reads by a literal name (`import_module("a.b")`,
    `__import__("a")`, `sys.modules["a"]`, `sys.modules.get("a")`), else None."""
    if isinstance(node, ast.Subscript) and _is_sys_modules(node.value):
        return _literal(node.slice)
    if not isinstance(node, ast.Call) or not node.args:
        return None
    reads_modules = isinstance(node.func, ast.Attribute) and node.func.attr == "get" and _is_sys_modules(node.func.value)
    name = _literal(node.args[0]) if reads_modules or _called_name(node) in IMPORT_CALLS else None
    return name if name and not name.startswith(".") else None


def _absolute(package: str, module: str | None, level: int) -> str:
    """The absolute name of `from <level dots><module> import ...` written in package `package`."""
    if not level:
        return module or ""
    base = package.rsplit(".", level - 1)[0] if level > 1 else package
    return f"{base}.{module}" if module else base


def imports_in(name: str, tree: ast.Module, is_package: bool) -> set[str]:
    """Every module name that module `name` (syntax tree `tree`) may import, anywhere in its source: each
    import statement's modules, `from X import y` as both X and X.y (y may be a submodule), and the literal
    names of `_named_import`. The packages above each are not added (`imported_modules` adds them)."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(package, node.module, node.level)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")
        else:
            found.add(_named_import(node) or "")
    return {module for module in found if module}


def _with_parents(name: str) -> list[str]:
    """`name` and the packages above it ("a.b.c" -> a, a.b, a.b.c): importing it runs each one."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def imported_modules(roots, packages: tuple[str, ...]) -> dict[str, Path]:
    """The modules of `packages` (top-level names) that importing `roots` can run: the roots, what their
    source imports (`imports_in`) from `packages`, transitively, and every package above each.
    Module name -> source file; a name that is no module (an imported attribute) is left out."""
    found: dict[str, Path] = {}
    pending = [parent for root in roots for parent in _with_parents(root)]
    while pending:
        name = pending.pop()
        if name in found or name.split(".")[0] not in packages:
            continue
        path = module_file(name)
        if path is None:
            continue
        found[name] = path
        tree = _tree(path)
        if tree is not None:
            imported = imports_in(name, tree, path.name == "__init__.py")
            pending.extend(parent for module in imported for parent in _with_parents(module))
    return found


def dynamic_imports(tree: ast.Module) -> list[tuple[int, str, str]]:
    """The places in `tree` where code may be imported or run in a way `imports_in` cannot name:
    (line, enclosing function's or class's qualified name or "<module>", what), e.g. `import_module(name)`
    with a computed name, `exec(...)`, `entry_points(...)`, `sys.modules[key]`."""
    sites: list[tuple[int, str, str]] = []

    def visit(node, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, child.name if scope == "<module>" else f"{scope}.{child.name}")
                continue
            what = _dynamic(child)
            if what:
                sites.append((child.lineno, scope, what))
            visit(child, scope)

    visit(tree, "<module>")
    return sites


def _dynamic(node) -> str:
    """What makes `node` an import or a run of code the walker cannot name ("" when it is none)."""
    if _named_import(node):
        return ""
    if isinstance(node, ast.Subscript) and _is_sys_modules(node.value):
        return "sys.modules[<computed name>]"
    if not isinstance(node, ast.Call):
        return ""
    called = _called_name(node)
    if called in IMPORT_CALLS:
        return f"{called}(<computed name>)"
    if called in LOADING_CALLS or (called in RUN_CALLS and isinstance(node.func, ast.Name)):
        return f"{called}(...)"
    if isinstance(node.func, ast.Attribute) and _is_sys_modules(node.func.value):  # .get of a literal: above
        return f"sys.modules.{called}({'<computed name>' if called == 'get' else '...'})"
    return ""


def package_source_digest(package: str) -> str:
    """A sha256 (hex, 16 digits) of every `.py` file of package `package` (its sub-packages too): their paths
    in the package and contents (`vipcli.digests.sources_digest`; each file read once per process while it is
    unchanged). "" when the package has no folder."""
    from vipcli.digests import sources_digest

    folder = package_folder(package)
    if folder is None:
        return ""
    return sources_digest((path.relative_to(folder).as_posix(), path) for path in folder.rglob("*.py"))
