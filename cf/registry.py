"""The base of pluggable model classes (ML models, inference models).

Models are registered by class name, derived with ``derive(name, cls_dict)`` and configured per run with
typed settings that override class attributes.

Each family (e.g. :class:`cf.ml.MLModel`) is a direct subclass that declares its own ``_registry`` dict and
a ``kind`` used in messages; every further subclass is registered in its family's registry under its class
name, and a name used by two modules is an error naming both.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, ClassVar, Literal, TypeVar, overload

from typing_extensions import Self

from cf.util import UserError, short_hash

__all__ = ["RegisteredModel"]

M = TypeVar("M", bound="RegisteredModel")


class RegisteredModel:
    """Registry, derivation and settings shared by the model families."""

    #: The family's name in messages, e.g. "ML model".
    kind: ClassVar[str] = "model"
    #: The registered name of the class (its class name), as columnflow calls it.
    cls_name: ClassVar[str] = "model"
    _registry: ClassVar[dict[str, type[RegisteredModel]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.cls_name = cls.__name__
        if "_registry" in cls.__dict__:
            return  # a family root: it holds the registry of its subclasses
        existing = cls._registry.get(cls.__name__)
        if existing is not None and existing.__module__ != cls.__module__:
            raise ValueError(
                f"two {cls.kind}s are named '{cls.__name__}': in module {existing.__module__} and in {cls.__module__}",
            )
        cls._registry[cls.__name__] = cls

    @classmethod
    def derive(
        cls,
        name: str,
        bases: tuple[type, ...] = (),
        cls_dict: dict[str, Any] | None = None,
        module: str | None = None,
    ) -> type[Self]:
        """Create and register a subclass named ``name`` whose class attributes are ``cls_dict``'s items.

        Args:
            name: The new class's name, under which it is registered.
            bases: Further base classes, placed after this class (as in columnflow).
            cls_dict: The class attributes of the new class.
            module: The module the class counts as defined in (default: the caller's).

        Raises:
            TypeError: If the new class still lacks an implementation of an abstract method.
        """
        namespace = dict(cls_dict or {})
        namespace["__module__"] = module or namespace.get(
            "__module__", sys._getframe(1).f_globals.get("__name__", cls.__module__)
        )
        derived = type(name, (cls, *bases), namespace)
        missing = sorted(getattr(derived, "__abstractmethods__", ()))
        if missing:
            del cls._registry[name]
            raise TypeError(f"{cls.kind} '{name}' does not implement the abstract method(s): {', '.join(missing)}")
        return derived

    @classmethod
    def names(cls) -> list[str]:
        """The names of the registered, complete (non-abstract) classes of the family."""
        return sorted(name for name, c in cls._registry.items() if not getattr(c, "__abstractmethods__", None))

    @overload
    @classmethod
    def get_cls(cls, name: str, deep: bool = True, silent: Literal[False] = False) -> type[Self]: ...

    @overload
    @classmethod
    def get_cls(cls, name: str, deep: bool = True, *, silent: bool) -> type[Self] | None: ...

    @classmethod
    def get_cls(cls, name: str, deep: bool = True, silent: bool = False) -> type[Self] | None:
        """The registered class called ``name``; an unknown name is a UserError listing the available ones.

        Args:
            name: The class name.
            deep: Look among all registered classes of the family (columnflow's argument; the registry is flat, so
                False only finds direct subclasses of this class).
            silent: Return None for an unknown name instead of raising.
        """
        candidates = cls.names() if deep else [c.__name__ for c in cls.__subclasses__() if c.__name__ in cls.names()]
        if name not in candidates:
            if silent:
                return None
            raise UserError(f"unknown {cls.kind} '{name}', available: {', '.join(candidates) or '(none)'}")
        return cls._registry[name]  # type: ignore[return-value]

    @classmethod
    def has_cls(cls, name: str, deep: bool = True) -> bool:
        """Whether a (complete) class called ``name`` is registered."""
        return cls.get_cls(name, deep=deep, silent=True) is not None

    @classmethod
    def setting_names(cls) -> list[str]:
        """The attributes that settings may override: public class attributes holding plain values."""
        return sorted(
            name
            for name in dir(cls)
            if not name.startswith("_")
            and name not in {"kind", "cls_name"}
            and not callable(getattr(cls, name))
            and not isinstance(inspect.getattr_static(cls, name), property)
        )

    def apply_settings(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Set each setting as an attribute of this instance; a single value given for a tuple becomes a tuple.

        Raises:
            UserError: For a setting that is not one of :meth:`setting_names`.
        """
        allowed = self.setting_names()
        for key, given in settings.items():
            if key not in allowed:
                raise UserError(
                    f"unknown setting '{key}' for {self.kind} '{type(self).__name__}', allowed: {', '.join(allowed)}",
                )
            default = getattr(type(self), key)
            value = given
            if isinstance(default, tuple) and not isinstance(given, tuple):
                value = (given,)
            elif isinstance(default, float) and isinstance(given, int) and not isinstance(given, bool):
                value = float(given)
            setattr(self, key, value)
        return settings

    @staticmethod
    def settings_hash(settings: dict[str, Any]) -> str:
        """A short stable hash of settings (empty without settings), for output paths."""
        return short_hash(settings) if settings else ""
