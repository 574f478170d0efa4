"""Run a function right after a module is imported, without importing it early.

The plug-ins must adjust modules that are expensive to import (vLLM's layers, veRL's FSDP engine)
and that only some processes import. Importing them from the plug-in would add seconds to every
veRL process and could create import cycles inside ``import verl``; a post-import hook costs
nothing until the module is actually loaded.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable
from types import ModuleType

_HOOKS: dict[str, list[Callable[[ModuleType], None]]] = {}


class _HookLoader(importlib.abc.Loader):
    def __init__(self, wrapped: importlib.abc.Loader, name: str) -> None:
        self._wrapped = wrapped
        self._name = name

    def create_module(self, spec):
        return self._wrapped.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._wrapped.exec_module(module)
        for hook in _HOOKS.pop(self._name, []):
            hook(module)


class _HookFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _HOOKS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _HookLoader(spec.loader, fullname)
        return spec


_FINDER = _HookFinder()


def when_imported(name: str, hook: Callable[[ModuleType], None]) -> None:
    """Call ``hook(module)`` once ``name`` is imported (now, if it already is)."""
    module = sys.modules.get(name)
    if module is not None and getattr(module, "__spec__", None) is not None:
        hook(module)
        return
    _HOOKS.setdefault(name, []).append(hook)
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
