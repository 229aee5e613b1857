"""What every asset's Launchpad Config shares: it becomes its model's settings dataclass
(models hold `*Settings`, pipelines `*Config`; tests/test_configs.py checks they agree)."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import dagster as dg

Settings = TypeVar("Settings")


def model_settings(config: dg.Config, settings_class: type[Settings], **converted) -> Settings:
    """`settings_class` from the config's fields of the same name; fields that are the
    pipeline's own (seeds, approval margins) stay out. `converted` gives the settings
    whose Launchpad form differs (a list of rules, one field per service level)."""
    names = {f.name for f in dataclasses.fields(settings_class)}
    shared = {name: getattr(config, name) for name in type(config).model_fields if name in names}
    return settings_class(**(shared | converted))


def validated_settings(config: Any, what: str) -> Any:
    """`config.settings()`, checked: a bad Launchpad value fails the run, saying what."""
    settings = config.settings()
    try:
        settings.validate()
    except ValueError as exc:
        raise dg.Failure(f"{what}: {exc}") from exc
    return settings
