"""ml_collections configs: ``get_config(arg)`` with modes such as ``quick`` (tests), ``default``, ``paper``.

Each config file starts from its schema's defaults (`defaults`), so a default is written once, in the schema (the
dataclasses that parse the config: `noisegroup.engine.config.TrainConfig`, a family's fields, `LNSConfig`,
`AblationConfig`); a mode writes only what it changes.
"""

from __future__ import annotations

import dataclasses
from typing import Any


def defaults(*schemas: type, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """The field defaults of dataclass `schemas`, merged left to right (fields without a default, and `leave_out`,
    are left out)."""
    values: dict[str, Any] = {}
    for schema in schemas:
        for field in dataclasses.fields(schema):
            if field.name in leave_out:
                continue
            if field.default is not dataclasses.MISSING:
                values[field.name] = field.default
            elif field.default_factory is not dataclasses.MISSING:
                values[field.name] = field.default_factory()
    return values
