"""Run configuration built from the specs: every scalar field, overridable per run (launchpad, CLI)."""

import dataclasses
import typing
from typing import Optional

import dagster as dg
import pydantic


def spec_config(name: str, doc: str, spec_types: tuple[type, ...], skip: frozenset[str] = frozenset()) -> type[dg.Config]:
    """A ``dg.Config`` with every field of ``spec_types`` but nested specs and ``skip``, each
    optional (unset: the settings' value)."""
    fields = {}
    for spec_type in spec_types:
        hints = typing.get_type_hints(spec_type)
        for f in dataclasses.fields(spec_type):
            if dataclasses.is_dataclass(hints[f.name]) or f.name in skip:
                continue
            default = f.default if f.default is not dataclasses.MISSING else None
            fields[f.name] = (Optional[hints[f.name]], pydantic.Field(None, description=f"{f.name} (default {default})"))
    return pydantic.create_model(name, __base__=dg.Config, __doc__=doc, **fields)
