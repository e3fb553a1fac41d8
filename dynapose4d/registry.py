"""One registry per extension point: components register themselves where they are defined.

    DEFORMATIONS = Registry("deformation", "dynapose4d.deform")

    @DEFORMATIONS.register("hexplane", schema={"resolution": ..., ...})
    class HexPlaneDeformation(Deformation): ...

A registry imports every module of its package the first time it is read, so a new module
there registers itself without a line anywhere else; code outside the package registers by
being imported, which the top-level `plugins=[my_module]` setting does before anything runs
(see `import_plugins`). A component's `schema` is what validation.py checks its settings
against (a dict of rules or a `Variants`, rules.py), or a function returning them when they name
other registries' components (a stage's prior choices); its config file supplies the values.
"""

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .errors import DynaPoseError


@dataclass(frozen=True)
class Entry:
    name: str
    component: Callable  # a class or a factory
    rules: object = field(default_factory=dict)  # its settings' rules (a dict, Variants), or a function returning them

    @property
    def schema(self):
        """The rules for the component's settings (validation.py), read now: after every plugin registered."""
        return self.rules() if callable(self.rules) else self.rules


class Registry:
    """The components of one kind by name, from `package` (imported on first read) and plugins."""

    def __init__(self, kind: str, package: str | None = None):
        self.kind, self.package = kind, package
        self._entries: dict[str, Entry] = {}
        self._discovered = package is None

    def register(self, name: str, schema=None) -> Callable:
        """Decorator: register the decorated class or function as `name`."""

        def add(component: Callable) -> Callable:
            if name in self._entries and self._entries[name].component is not component:
                raise DynaPoseError(f"two {self.kind}s are registered as {name!r}: rename one")
            self._entries[name] = Entry(name, component, {} if schema is None else schema)
            return component

        return add

    def _discover(self) -> None:
        if self._discovered:
            return
        self._discovered = True  # first: the package's modules import this registry while they load
        package = importlib.import_module(self.package)
        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda module: module.name):
            importlib.import_module(f"{self.package}.{module.name}")

    def __getitem__(self, name: str) -> Entry:
        self._discover()
        if name not in self._entries:
            raise DynaPoseError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}")
        return self._entries[name]

    def __iter__(self) -> Iterator[Entry]:
        """The entries by name: the order does not depend on which module was imported first."""
        return iter([self._entries[name] for name in self.names()])

    def names(self) -> list[str]:
        self._discover()
        return sorted(self._entries)


def import_plugins(modules) -> None:
    """Import the modules of the `plugins` setting, so that the components they define register."""
    for name in modules or ():
        try:
            importlib.import_module(name)
        except ImportError as error:
            raise DynaPoseError(f"plugins: cannot import {name!r} ({error}); is it on PYTHONPATH?") from None
