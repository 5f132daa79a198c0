"""The base of pluggable model classes (ML models, inference models).

Models are registered by class name, derived with ``derive(name, cls_dict)`` and configured per run with
settings: class attributes declared with :func:`setting`, which ``--ml-model-settings`` /
``--inference-model-settings`` may override for one run. Only declared settings can be set from the command line,
and each value is checked against the declaration (type, range, choices) before any work starts.

Each family (e.g. :class:`cf.ml.MLModel`) is a direct subclass that declares its own ``_registry`` dict and
a ``kind`` used in messages; every further subclass is registered in its family's registry under its class
name, and a name used by two modules is an error naming both.
"""

from __future__ import annotations

import builtins
import dataclasses
import sys
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, TypeVar, overload

from law.util import create_hash
from typing_extensions import Self

from cf.util import UserError, unknown_name_message

__all__ = ["RegisteredModel", "Setting", "parse_settings", "setting", "settings_text", "split_settings"]

M = TypeVar("M", bound="RegisteredModel")

_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a text"}


def split_settings(items: Sequence[str] | str) -> dict[str, str]:
    """Split ``key=value`` items (a list, or one comma-separated text) into a dict of texts.

    Raises:
        UserError: For an item that is not of the form ``key=value``.
    """
    if isinstance(items, str):
        items = [item for item in items.split(",") if item]
    settings: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"setting '{item}' is not of the form key=value")
        settings[key.strip()] = value.strip()
    return settings


def parse_settings(items: Sequence[str] | str) -> dict[str, Any]:
    """Parse ``key=value`` items into values typed by their text, without a declaration to check against.

    Values become int, float, bool (``true`` / ``false``), a tuple (``64:64``), or stay a string. The tasks pass
    the texts of :func:`split_settings` instead, which the declared settings convert and check.

    Example:
        >>> parse_settings(["epochs=3", "layers=64:32", "lr=0.01", "batch_norm=false"])
        {'epochs': 3, 'layers': (64, 32), 'lr': 0.01, 'batch_norm': False}
    """
    return {key: _parse_value(value) for key, value in split_settings(items).items()}


def settings_text(settings: Mapping[str, Any]) -> tuple[str, ...]:
    """Typed settings as sorted ``key=value`` items, as typed on the command line (``layers=64:64``)."""
    return tuple(f"{key}={_format(value)}" for key, value in sorted(settings.items()))


def _parse_value(text: str) -> Any:
    if ":" in text:
        return tuple(_parse_value(part) for part in text.split(":"))
    if text.lower() in {"true", "false"}:
        return text.lower() == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


@dataclasses.dataclass(frozen=True)
class Setting:
    """The declaration of a model setting: its default and the values it may take.

    As a class attribute it reads as its default (``self.epochs`` is an int); a subclass or ``derive`` that
    assigns a plain value changes the default and keeps the declaration. Create it with :func:`setting`.

    Attributes:
        default: The value without a setting.
        value_type: ``bool``, ``int``, ``float`` or ``str``: the type of the value, or of each tuple item.
        is_tuple: Whether the value is a tuple (``64:64`` on the command line).
        help: One line on what the setting does.
        minimum: The smallest allowed value (of each item), inclusive.
        maximum: The largest allowed value (of each item), inclusive.
        above: A bound that the value (each item) must exceed.
        below: A bound that the value (each item) must stay under.
        choices: The allowed values (of each item).
        nullable: Whether None (``none`` on the command line) is allowed too.
        name: The attribute name (set when the class is made).
    """

    default: Any
    value_type: type
    is_tuple: bool = False
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    name: str = ""

    def __set_name__(self, owner: type, name: str) -> None:
        object.__setattr__(self, "name", name)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return self.default

    def describe(self) -> str:
        """What the setting accepts, e.g. ``an integer >= 1`` or ``a ':'-separated list, each item one of a, b``."""
        text = f"a ':'-separated list, each item {self._describe_item()}" if self.is_tuple else self._describe_item()
        return f"{text}, or none" if self.nullable else text

    def _describe_item(self) -> str:
        text = _KINDS[self.value_type]
        if self.choices is not None:
            text = f"one of {', '.join(_format(choice) for choice in self.choices)}"
        bounds = [
            f"{sign} {_format(bound)}"
            for sign, bound in ((">=", self.minimum), ("<=", self.maximum), (">", self.above), ("<", self.below))
            if bound is not None
        ]
        return f"{text} {' and '.join(bounds)}" if bounds else text

    def check(self, value: Any) -> Any:
        """The value as the declared type (text from the command line is converted).

        Raises:
            ValueError: If the value is not one the setting accepts (the message says what is).
        """
        if self.nullable and (value is None or (isinstance(value, str) and value.strip().lower() == "none")):
            return None
        if self.is_tuple:
            items = value.split(":") if isinstance(value, str) else value
            items = tuple(items) if isinstance(items, (tuple, list)) else (items,)
            if not items:
                raise ValueError(f"setting '{self.name}' is empty: give {self.describe()}")
            return tuple(self._check_item(item, value) for item in items)
        return self._check_item(value, value)

    def _check_item(self, item: Any, value: Any) -> Any:
        converted = _convert(item, self.value_type)
        bad = converted is None or (self.choices is not None and converted not in self.choices)
        if not bad and self.value_type in {int, float}:
            bad = (
                (self.minimum is not None and converted < self.minimum)
                or (self.maximum is not None and converted > self.maximum)
                or (self.above is not None and not converted > self.above)
                or (self.below is not None and not converted < self.below)
            )
        if bad and self.is_tuple:
            raise ValueError(
                f"setting '{self.name}={_format(value)}': item '{_format(item)}' is not {self._describe_item()}"
                " (the value is a ':'-separated list)",
            )
        if bad:
            raise ValueError(f"setting '{self.name}={_format(value)}' is not {self.describe()}")
        return converted


def setting(
    default: Any,
    help: str = "",
    *,
    type: type | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    below: float | None = None,
    choices: tuple[Any, ...] | list[Any] | None = None,
    nullable: bool = False,
) -> Any:
    """Declare a class attribute as a setting that may be changed for one run.

    Example::

        class MyModel(MLModel):
            epochs: int = setting(10, "maximum number of epochs", minimum=1)
            layers: tuple[int, ...] = setting((64, 64), "units of the hidden layers", minimum=1)
            backend: str = setting("onnx", "how the networks are run", choices=("onnx", "keras"))

    Args:
        default: The value without a setting; a tuple makes a tuple setting (``64:64`` on the command line).
        help: One line on what the setting does.
        type: The type of the value, or of each tuple item (default: the type of ``default`` or of its first item).
        minimum: The smallest allowed value (of each item).
        maximum: The largest allowed value (of each item).
        above: A bound that the value (each item) must exceed.
        below: A bound that the value (each item) must stay under.
        choices: The allowed values (of each item).
        nullable: Whether None (``none`` on the command line) is allowed too (implied by a None default).

    Returns:
        The :class:`Setting` (typed as ``Any`` so that the attribute keeps the type of its values).
    """
    is_tuple = isinstance(default, tuple)
    sample = (default[0] if default else None) if is_tuple else default
    kind = type or (builtins.type(sample) if sample is not None else None)
    if kind not in _KINDS:
        raise TypeError(f"a setting needs a bool, int, float or str value (or a tuple of them), got {default!r}")
    allowed = tuple(choices) if choices is not None else None
    declared = Setting(
        default, kind, is_tuple, help, minimum, maximum, above, below, allowed, nullable or default is None
    )
    declared.check(default)
    return declared


def _convert(value: Any, kind: type) -> Any:
    """``value`` as ``kind``, None where it is not one (text is parsed, an int counts as a float, not a bool)."""
    if isinstance(value, str) and kind is not str:
        text = value.strip().lower()
        if kind is bool:
            return {"true": True, "false": False}.get(text)
        try:
            return kind(text)
        except ValueError:
            return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is not bool and isinstance(value, bool):
        return None
    return value if isinstance(value, kind) else None


def _format(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ":".join(_format(item) for item in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


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
        cls._redeclare_overridden_settings()
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
            raise UserError(unknown_name_message(cls.kind, name, candidates))
        return cls._registry[name]  # type: ignore[return-value]

    @classmethod
    def has_cls(cls, name: str, deep: bool = True) -> bool:
        """Whether a (complete) class called ``name`` is registered."""
        return cls.get_cls(name, deep=deep, silent=True) is not None

    @classmethod
    def _redeclare_overridden_settings(cls) -> None:
        """A plain value assigned to an inherited setting becomes its new default; the declaration stays."""
        inherited = {name: declared for base in cls.__mro__[1:] for name, declared in _own_settings(base).items()}
        for name, value in list(vars(cls).items()):
            if name in inherited and not isinstance(value, Setting) and name not in _own_settings(cls):
                try:
                    declared = dataclasses.replace(inherited[name], default=inherited[name].check(value))
                except ValueError as error:
                    raise ValueError(f"{cls.kind} '{cls.__name__}': {error}") from None
                setattr(cls, name, declared)

    @classmethod
    def declared_settings(cls) -> dict[str, Setting]:
        """The settings of the class, by name (a subclass's declaration wins)."""
        declared: dict[str, Setting] = {}
        for base in reversed(cls.__mro__):
            declared.update(_own_settings(base))
        return dict(sorted(declared.items()))

    @classmethod
    def setting_names(cls) -> list[str]:
        """The names of the declared settings."""
        return list(cls.declared_settings())

    @classmethod
    def checked_settings(cls, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The settings converted to their declared types, each checked against its declaration.

        Args:
            settings: Name -> value; text (from the command line) is converted to the declared type.

        Raises:
            UserError: For an undeclared setting or a value the declaration does not accept.
        """
        declared = cls.declared_settings()
        checked: dict[str, Any] = {}
        for key, given in settings.items():
            if key not in declared:
                message = unknown_name_message("setting", key, declared, f"for {cls.kind} '{cls.cls_name}'")
                raise UserError(message.replace(", available: ", ", declared: "))
            try:
                checked[key] = declared[key].check(given)
            except ValueError as error:
                raise UserError(f"{cls.kind} '{cls.cls_name}': {error}") from None
        return checked

    def apply_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Check the settings (:meth:`checked_settings`) and set each one as an attribute of this instance.

        Returns:
            The settings as the declared types.
        """
        checked = self.checked_settings(settings)
        for key, value in checked.items():
            setattr(self, key, value)
        return checked

    @staticmethod
    def settings_hash(settings: Mapping[str, Any], leave_out: frozenset[str] | set[str] = frozenset()) -> str:
        """The hash of the sorted ``name_value`` pairs, as columnflow's ``parameters_repr`` (empty without any).

        Args:
            settings: The settings.
            leave_out: Names of settings that do not count.
        """
        pairs = [f"{name}_{_path_value(value)}" for name, value in sorted(settings.items()) if name not in leave_out]
        return create_hash("__".join(pairs)) if pairs else ""

    @property
    def settings_repr(self) -> str:
        """The hash of this instance's settings (empty without settings), the model's part of output paths."""
        return self.settings_hash(self.settings)

    #: The settings given to this instance (checked, as the declared types).
    settings: dict[str, Any]


def _own_settings(cls: type) -> dict[str, Setting]:
    return {name: value for name, value in vars(cls).items() if isinstance(value, Setting)}


def _path_value(value: Any) -> str:
    """A setting's value in the hashed pairs: tuples joined by ``_`` (columnflow's format)."""
    if isinstance(value, (list, tuple)):
        return "_".join(_path_value(item) for item in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value}" if value >= 0.01 else f"{value:.2e}"
    return str(value)
