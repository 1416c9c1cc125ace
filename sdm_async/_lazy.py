"""Names of a package that import their module on first use (PEP 562): importing the package
then loads neither grpc nor protobuf nor a model module, only what a program names."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def attach(
    package: str, modules: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose names `modules` maps to the module
    defining each (relative to the package); `namespace` is the package's `globals()`."""

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{module}", package), name)
        namespace[name] = value  # later lookups find it without __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(modules))

    return __getattr__, __dir__


class _Bound:
    """A service attribute: on first access from an instance, import the service's module,
    make the service from the instance's `_service_args`, and store it in the instance's
    `__dict__`, which later lookups find first (this is a non-data descriptor)."""

    __slots__ = ("cls", "module", "name", "snapshot")

    def __init__(self, module: str, cls: str, snapshot: bool) -> None:
        self.module = module
        self.cls = cls
        self.snapshot = snapshot
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return self
        module = importlib.import_module(self.module)
        service = getattr(module, self.cls)(*obj._service_args)
        if self.snapshot:
            service = getattr(module, "Snapshot" + self.cls)(service)
        obj.__dict__[self.name] = service
        return service


def bound(module: str, cls: str, snapshot: bool = False) -> Any:
    """The attribute for service class `cls` of `module` (absolute), for a snapshot client
    with `snapshot`; typed Any so that it can stand for the service in annotations."""
    return _Bound(module, cls, snapshot)
