"""Render docs/configuration.md from the Launchpad-editable Config classes.

The defaults are documented from the code itself, so the page cannot drift:
tests/test_config_docs.py fails when the file is out of date
(`python -m pipelines.config_docs > docs/configuration.md` rewrites it).
"""

from __future__ import annotations

import dagster as dg

from pipelines.definitions import defs

HEADER = """# Configuration

Settings an analyst changes per run are Dagster `Config` on the assets (edit
them in the Launchpad, under `ops:`), or resources (under `resources:`).
The CLI uses the same defaults. This page is generated from the code
(`python -m pipelines.config_docs > docs/configuration.md`); a test keeps it
in step.

Run-wide settings:

| resource | field | default | meaning |
|---|---|---|---|
| `run_settings` | `as_of` | latest order date + 1 day | scoring day (YYYY-MM-DD); nothing on or after it is read (also `STOREPULSE_AS_OF`, `storepulse run --as-of`) |
| `storepulse` | `home`, `warehouse_path`, `landing_dir`, `export_dir` | from the environment (README) | where things live |
"""


def _default(field) -> str:
    if field.is_required():
        return "(required)"
    value = field.default
    if isinstance(value, list):
        return f"{len(value)} rules (see code)"
    return f"`{value!r}`"


def render() -> str:
    lines = [HEADER]
    graph = defs.resolve_asset_graph()
    seen: set[str] = set()
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        if not node.is_materializable:
            continue
        assets_def = graph.assets_def_for_key(key)
        op = assets_def.op
        config_class = _config_class(op)
        if config_class is None or op.name in seen:
            continue
        seen.add(op.name)
        lines.append(f"\n## `{op.name}` — {config_class.__name__}\n")
        doc = (config_class.__doc__ or "").strip().splitlines()
        if doc:
            lines.append(doc[0] + "\n")
        lines.append("| field | default | meaning |")
        lines.append("|---|---|---|")
        for name, field in config_class.model_fields.items():
            description = (field.description or "").replace("|", "\\|")
            lines.append(f"| `{name}` | {_default(field)} | {description} |")
    return "\n".join(lines) + "\n"


def _config_class(op) -> type[dg.Config] | None:
    import inspect

    compute = getattr(op, "compute_fn", None)
    fn = getattr(compute, "decorated_fn", None)
    if fn is None:
        return None
    for parameter in inspect.signature(fn).parameters.values():
        annotation = parameter.annotation
        if (
            inspect.isclass(annotation)
            and issubclass(annotation, dg.Config)
            and not issubclass(annotation, dg.ConfigurableResource)
        ):
            return annotation
    return None


if __name__ == "__main__":
    print(render(), end="")
