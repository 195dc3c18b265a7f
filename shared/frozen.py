"""`quick_init`: a faster `__init__` for frozen, slotted dataclasses on the hot path.

A frozen dataclass's generated `__init__` sets every field with `object.__setattr__(self, name, value)`,
a global lookup and a generic attribute set per field; for the 14 fields of a fact that was most of the cost
of building one (7 µs against 2 µs for an unfrozen class, Python 3.11). The replacement sets each slot
through its own descriptor, which a frozen class's `__setattr__` never sees, so instances stay exactly as
frozen: same signature, same defaults and factories, same eq/hash/repr, assignment still raises.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def quick_init(cls: type[T]) -> type[T]:
    """Give the frozen, slotted dataclass `cls` an `__init__` that writes slots through their descriptors."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__} must be a frozen dataclass with slots=True")
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has a __post_init__, which quick_init would skip")
    fields = [f for f in dataclasses.fields(cls) if f.init]  # type: ignore[arg-type]
    if len(fields) != len(dataclasses.fields(cls)) or any(f.kw_only for f in fields):  # type: ignore[arg-type]
        raise TypeError(f"{cls.__name__}: quick_init supports plain positional-or-keyword fields only")
    scope: dict[str, Any] = {"_MISSING": object()}
    params_src: list[str] = []
    body: list[str] = []
    for i, f in enumerate(fields):
        scope[f"_set{i}"] = cls.__dict__[f.name].__set__
        if f.default is not dataclasses.MISSING:
            scope[f"_default{i}"] = f.default
            params_src.append(f"{f.name}=_default{i}")
            body.append(f"    _set{i}(self, {f.name})")
        elif f.default_factory is not dataclasses.MISSING:
            scope[f"_factory{i}"] = f.default_factory
            params_src.append(f"{f.name}=_MISSING")
            body.append(f"    _set{i}(self, _factory{i}() if {f.name} is _MISSING else {f.name})")
        else:
            params_src.append(f.name)
            body.append(f"    _set{i}(self, {f.name})")
    source = f"def __init__(self, {', '.join(params_src)}):\n" + "\n".join(body or ["    pass"]) + "\n"
    namespace: dict[str, Any] = {}
    exec(source, scope, namespace)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    # the dataclass's own __init__, kept for the test that holds the two side by side
    cls.__dataclass_init__ = cls.__init__  # type: ignore[attr-defined]
    cls.__init__ = init  # type: ignore[method-assign]
    return cls
