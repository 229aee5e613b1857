"""Header -> layout: one of the real exports (platforms.py), or a canonical kind.

A layout turns the file's frame (every column a string, plus `__row`, the data row
number) into canonical frames per kind. Real exports are recognised by columns no
canonical file has; everything else goes through the alias tables of kinds.py and
must fit its kind (docs/ingest.md). Per-file conventions (Excel's text guard,
decimal commas, day-first dates…) are undone for every layout (conventions.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import polars as pl

from storepulse.ingest import platforms
from storepulse.ingest.conventions import EXCEL_NUMBERED, TEXT_GUARDED, tidy
from storepulse.ingest.frames import PROBLEM, ROW, LayoutError, blank_to_null, col
from storepulse.ingest.kinds import (
    FIT_THRESHOLD,
    KIND_SPECS,
    ROW_PROBLEM,
    HeaderMatch,
    header_key,
    match_header,
    rank_kinds,
    runner_up,
)

UNFIT = "unfit"  # the layout name of a header that fits no kind well enough


@dataclass(frozen=True)
class Layout:
    # canonical kind name, shopify_orders / meta_ads / google_ads / tiktok_ads, or UNFIT
    name: str
    kind: str | None  # the kind the file counts under (orders for Shopify); None if UNFIT
    columns: tuple[str, ...]
    match: HeaderMatch | None = None  # for canonical layouts (the best candidate if UNFIT)
    notes: tuple[str, ...] = ()  # what the reader had to repair (NUL padding, …)
    runner_up: HeaderMatch | None = None  # the next kind, where it came close
    candidates: tuple[HeaderMatch, ...] = ()  # UNFIT: the kinds it came closest to

    @property
    def usable(self) -> bool:
        """A known export layout, or a header that fits its kind (kinds.py)."""
        return self.match is None or (self.name != UNFIT and self.match.fits)

    @property
    def score(self) -> float | None:
        """How well the header fits the kind (1.0 for an export recognised by its
        signature columns, None when no kind fits)."""
        if self.name == UNFIT:
            return None
        return 1.0 if self.match is None else round(self.match.score, 3)

    @property
    def unused_columns(self) -> tuple[str, ...]:
        """Columns of a canonical file that belong to no column of its kind."""
        return () if self.match is None or self.name == UNFIT else self.match.unknown

    def map(self, frame: pl.DataFrame, source_name: str) -> tuple[dict[str, pl.DataFrame], str]:
        """Canonical frames per kind, and a note for the report ('' if nothing to say)."""
        if PROBLEM not in frame.columns:
            frame = frame.with_columns(pl.lit(None, pl.Utf8).alias(PROBLEM))
        if self.name == UNFIT:
            raise LayoutError(unfit_message(self))
        mapper = platforms.MAPPERS.get(self.name, _map_canonical)
        frames, note = mapper(frame, self, source_name)
        tidied, tidy_notes = {}, []
        for kind, out in frames.items():
            out, notes = tidy(out, kind)
            tidied[kind] = out
            tidy_notes += [n for n in notes if n not in tidy_notes]
        return tidied, "; ".join(n for n in (note, *tidy_notes, *self.notes) if n)


def detect_layout(columns: list[str]) -> Layout | None:
    """The layout a header belongs to, or None when it matches nothing known.

    A canonical match may be incomplete (its `match.missing` says what is absent):
    callers report that as a file-level failure.
    """
    cols = tuple(str(c) for c in columns)
    keys = {header_key(c) for c in cols}
    if platforms.is_shopify(keys):
        return Layout("shopify_orders", "orders", cols)
    if {"handle", "variant_sku"} <= keys:
        return Layout("shopify_products", "products", cols)
    if platforms.meta_spend_column(cols):
        return Layout("meta_ads", "ad_spend", cols)
    if platforms.is_tiktok(keys):
        return Layout("tiktok_ads", "ad_spend", cols)
    if platforms.is_google(keys) and ("day" in keys or "date" in keys or "campaign" in keys):
        return Layout("google_ads", "ad_spend", cols)
    if platforms.is_klaviyo(keys):
        return Layout("klaviyo_profiles", "customers", cols)
    ranked = rank_kinds(list(cols))
    if not ranked or ranked[0].used < 2:
        return None
    best = ranked[0]
    if best.fits or (not best.complete and best.score >= FIT_THRESHOLD and best.evidence):
        # (An incomplete header of a clear kind fails with the columns it lacks.)
        return Layout(best.kind, best.kind, cols, best, runner_up=runner_up(ranked))
    return Layout(UNFIT, None, cols, best, candidates=tuple(m for m in ranked[:3] if m.used >= 2))


def unfit_message(layout: Layout) -> str:
    """Why a header was not loaded as any kind, naming the candidates and the fix."""
    names = "; ".join(m.describe() for m in layout.candidates or (layout.match,))
    return (
        "the columns fit no kind well enough to load safely, so the whole file is kept in "
        f"quarantine (nothing was loaded). Closest: {names}. If it is one of these, rename "
        "its columns to that kind's names (README, 'Landing formats'); otherwise move it "
        "out of the landing folder"
    )


def _map_canonical(frame: pl.DataFrame, layout: Layout, source_name: str):
    match = layout.match
    assert match is not None
    note = ""
    missing = list(match.missing)
    extra: list[pl.Expr] = []
    if layout.kind == "ad_spend" and missing == ["platform"]:
        platform = platforms.platform_from_name(source_name)
        if platform:
            extra.append(pl.lit(platform).alias("platform"))
            missing = []
            note = f"platform '{platform}' taken from the file name"
    if missing:
        raise LayoutError(
            f"looks like {article(layout.kind)} file but lacks required column(s): "
            f"{', '.join(missing)}; add them or rename the matching headers"
        )
    columns = []
    clashes: list[pl.Expr] = []
    for src, dst in match.mapping.items():
        # polars names a repeated header 'total_duplicated_0': the same column twice.
        twins = [c for c in frame.columns if re.fullmatch(re.escape(src) + r"_duplicated_\d+", c)]
        others = [blank_to_null(pl.col(c)) for c, d in match.fallbacks if d == dst]
        others += [blank_to_null(pl.col(c)) for c in twins]
        expr = pl.coalesce(blank_to_null(pl.col(src)), *others) if others else pl.col(src)
        columns.append(expr.alias(dst))
        for twin in twins:
            first, second = pl.col(src).str.strip_chars(), pl.col(twin).str.strip_chars()
            clashes.append(
                pl.when((first != "") & (second != "") & (first != second)).then(
                    pl.format(
                        "the header has column {} twice and this row has different values "
                        "in them ('{}' and '{}'); remove or rename the wrong column",
                        pl.lit(repr(src)),
                        first,
                        second,
                    )
                )
            )
    problem = col(frame, PROBLEM)
    if clashes:
        problem = pl.coalesce(problem, *clashes)
    mapped = set(match.mapping.values())
    if match.header_currency and "currency" not in mapped and "currency" in _kind_columns(layout):
        extra.append(pl.lit(match.header_currency).alias("currency"))
        note = "; ".join(
            n for n in (note, f"currency {match.header_currency} taken from the headers") if n
        )
    out = frame.select(pl.col(ROW), *columns, *extra, problem.alias(ROW_PROBLEM))
    return {layout.kind: out}, note


def _kind_columns(layout: Layout) -> tuple[str, ...]:
    return KIND_SPECS[layout.kind].columns


def article(kind: str) -> str:
    """'an orders', 'a customers': for messages."""
    return ("an " if kind[0] in "aeiou" else "a ") + kind


__all__ = [
    "EXCEL_NUMBERED", "PROBLEM", "ROW", "TEXT_GUARDED", "Layout", "LayoutError", "detect_layout",
    "match_header",
]  # fmt: skip
