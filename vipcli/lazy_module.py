"""A module that is imported when one of its attributes is first read, not when the name is bound."""

from __future__ import annotations

import importlib


class LazyModule:
    """Stands for module `name` and imports it on the first attribute read (`torch.device`).

    `vipcli.api` binds `torch` and `PIL.Image` to these, so that `import vipcli.api` stays light while its
    annotations (`device: str | torch.device`) resolve for `typing.get_type_hints` and `inspect.signature(...,
    eval_str=True)`: those evaluate the annotation text in the module's globals, which a module `__getattr__`
    is never asked about. The real module is not put in place of this one; each read asks `sys.modules`."""

    def __init__(self, name: str) -> None:
        """`name`: the module's import name ("torch", "PIL.Image")."""
        self._name = name

    def __getattr__(self, attribute: str):
        """The real module's `attribute`, importing the module first if nothing has yet."""
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self) -> str:
        """Says what it stands for, and that it is not the module itself."""
        return f"<module {self._name!r}, imported on first use>"
