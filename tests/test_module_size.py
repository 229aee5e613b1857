"""No module over 800 lines (issue #15): a longer one holds more than one idea and
should be split along its seams. A module that needs more says why, here."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 800
FOLDERS = ("models", "storepulse", "pipelines", "benchmarks", "tests")
# path -> why one idea needs more than MAX_LINES (none today).
LONGER_ON_PURPOSE: dict[str, str] = {}


def too_long(root: Path) -> dict[str, int]:
    """Modules under root's FOLDERS longer than MAX_LINES and not explained."""
    found = {}
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").count("\n")
            name = str(path.relative_to(root))
            if lines > MAX_LINES and name not in LONGER_ON_PURPOSE:
                found[name] = lines
    return found


def test_no_module_is_longer_than_the_limit():
    found = too_long(REPO)
    assert not found, f"split these modules or say why in LONGER_ON_PURPOSE: {found}"


def test_a_planted_long_module_is_caught(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "short.py").write_text("x = 1\n" * MAX_LINES, encoding="utf-8")
    (tmp_path / "models" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1), encoding="utf-8")
    assert too_long(tmp_path) == {"models/long.py": MAX_LINES + 1}
