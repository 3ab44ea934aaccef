"""Config errors and the range rules sections check in __post_init__."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the dotted key path."""


# Range rules for __post_init__: (test, what the value must be). A section names its own keys;
# from_dict prefixes the section's dotted path, so the message names e.g. "finetune.optim.lr".
POSITIVE = (lambda v: v > 0, "> 0")
NON_NEGATIVE = (lambda v: v >= 0, ">= 0")
OPEN_UNIT = (lambda v: 0 < v < 1, "strictly between 0 and 1")
FRACTION = (lambda v: 0 <= v <= 1, "between 0 and 1")
HALF_OPEN_UNIT = (lambda v: 0 <= v < 1, ">= 0 and < 1")
NONEMPTY = (lambda v: len(v) > 0, "a non-empty list")


def check(section: Any, rule: tuple[Any, str], *names: str) -> None:
    """Raise ConfigError naming the first of `names` whose value (if set) breaks `rule`; lists are checked item by item."""
    test, wanted = rule
    for name in names:
        value = getattr(section, name)
        items = value if isinstance(value, list) and rule is not NONEMPTY else [value]
        for i, item in enumerate(items):
            if item is not None and not test(item):
                where = f"{name}[{i}]" if items is value else name
                raise ConfigError(f"{where}: must be {wanted}, got {item!r}")


def require(ok: bool, key: str, message: str) -> None:
    """A cross-field rule: raise ConfigError naming `key` unless ok."""
    if not ok:
        raise ConfigError(f"{key}: {message}")
