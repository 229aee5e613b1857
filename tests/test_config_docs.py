"""docs/configuration.md documents the defaults the code actually has."""

from pathlib import Path

from pipelines.config_docs import render

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_configuration_page_matches_the_code():
    assert DOC.read_text() == render(), (
        "docs/configuration.md is out of date: run "
        "`.venv/bin/python -m pipelines.config_docs > docs/configuration.md`"
    )


def test_page_lists_every_model_setting_with_its_default():
    text = render()
    for needle in ("horizon_days", "service_level_a", "budget_bound", "high_value_usd"):
        assert f"`{needle}`" in text
    assert "| `horizon_days` | `90` |" in text, "churn horizon defaults to 90 days (DESIGN §5)"
