"""Retail event calendar per market, shared by the demand and ad-ROI models.

`event_calendar(start, end, countries)` lists every event day per country:

| event | days | markets |
|---|---|---|
| black_friday_cyber_monday | Black Friday .. Cyber Monday (4 days) | all |
| singles_day | 11 Nov | all (cross-border shoppers follow it everywhere) |
| double_day_sale | 9.9, 10.10, 12.12 | South-East Asia (SEA_MARKETS) |
| prime_day | the published Prime Day dates, else 2nd Tue+Wed of July | Amazon markets |
| christmas | 24-25 Dec | markets whose `holidays` calendar has Christmas |
| ramadan | the 30 days before Eid al-Fitr | markets whose `holidays` calendar has Eid al-Fitr |
| eid_al_fitr, eid_al_adha | the holiday days from `holidays` | same |
| diwali | the day from `holidays` (India) | markets with Diwali/Deepavali |
| valentines_day | 14 Feb; 12 Jun in Brazil (Dia dos Namorados) | all |
| public_holiday | any other national public holiday from `holidays` | all the package knows |

Models use `event_distance_features`: per date x country, days until the next
and days since the last day of each event (clipped), which lets a tree learn
run-ups (shipping cut-offs before Christmas) and hangovers (the post-Black
Friday dip) without hard-coding their shape.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import holidays
import numpy as np
import polars as pl

EVENTS = (
    "black_friday_cyber_monday",
    "singles_day",
    "double_day_sale",
    "prime_day",
    "christmas",
    "ramadan",
    "eid_al_fitr",
    "eid_al_adha",
    "diwali",
    "valentines_day",
)

SEA_MARKETS = frozenset({"SG", "MY", "TH", "ID", "PH", "VN"})
AMAZON_MARKETS = frozenset(
    {"US", "CA", "MX", "BR", "GB", "DE", "FR", "IT", "ES", "NL", "SE", "PL", "BE", "TR"}
    | {"AE", "SA", "EG", "IN", "JP", "SG", "AU"}
)
# Diwali is a national holiday in few of these, but a shopping event in all of them.
DIWALI_MARKETS = frozenset({"IN", "SG", "MY", "NP", "LK", "MU", "FJ", "GY", "TT", "SR"})

# Published Prime Day dates (Amazon moves them); other years: 2nd Tuesday+Wednesday of July.
PRIME_DAY_DATES = {
    2022: (date(2022, 7, 12), 2),
    2023: (date(2023, 7, 11), 2),
    2024: (date(2024, 7, 16), 2),
    2025: (date(2025, 7, 8), 4),
}

CALENDAR_SCHEMA = {"date": pl.Date, "country": pl.String, "event": pl.String, "name": pl.String}


def black_friday(year: int) -> date:
    """The day after the fourth Thursday of November."""
    first = date(year, 11, 1)
    first_thursday = first + timedelta(days=(3 - first.weekday()) % 7)
    return first_thursday + timedelta(days=22)


def prime_days(year: int) -> list[date]:
    if year in PRIME_DAY_DATES:
        first, length = PRIME_DAY_DATES[year]
    else:
        july = date(year, 7, 1)
        first, length = july + timedelta(days=(1 - july.weekday()) % 7 + 7), 2
    return [first + timedelta(days=i) for i in range(length)]


def _country_holidays(country: str, years: list[int]) -> dict[date, str]:
    try:
        return dict(holidays.country_holidays(country, years=years, language="en_US").items())
    except (NotImplementedError, KeyError):
        return {}


def _days_named(calendar: dict[date, str], *needles: str) -> list[date]:
    return sorted(
        day for day, label in calendar.items() if any(n in label.lower() for n in needles)
    )


def _country_events(country: str, years: list[int]) -> list[tuple[date, str, str]]:
    calendar = _country_holidays(country, years)
    rows: list[tuple[date, str, str]] = []
    for year in years:
        bf = black_friday(year)
        rows += [
            (bf + timedelta(days=i), "black_friday_cyber_monday", "Black Friday") for i in range(4)
        ]
        rows.append((date(year, 11, 11), "singles_day", "11.11"))
        if country in SEA_MARKETS:
            rows += [(date(year, m, m), "double_day_sale", f"{m}.{m}") for m in (9, 10, 12)]
        if country in AMAZON_MARKETS:
            rows += [(d, "prime_day", "Prime Day") for d in prime_days(year)]
        valentine = date(year, 6, 12) if country == "BR" else date(year, 2, 14)
        rows.append((valentine, "valentines_day", "Valentine's Day"))
    if _days_named(calendar, "christmas"):
        rows += [(date(y, 12, d), "christmas", "Christmas") for y in years for d in (24, 25)]
    eid_fitr = _days_named(calendar, "eid al-fitr")
    if eid_fitr:
        rows += [(d, "eid_al_fitr", "Eid al-Fitr") for d in eid_fitr]
        rows += [(d, "eid_al_adha", "Eid al-Adha") for d in _days_named(calendar, "eid al-adha")]
        # Ramadan ends the day before the main Eid al-Fitr day (some calendars also
        # list bridge days before it, which must not shift the month).
        main_days = sorted(d for d, label in calendar.items() if label == "Eid al-Fitr") or eid_fitr
        first_days = [d for d in main_days if d - timedelta(days=1) not in main_days]
        rows += [
            (d - timedelta(days=i), "ramadan", "Ramadan") for d in first_days for i in range(1, 31)
        ]
    if country in DIWALI_MARKETS or _days_named(calendar, "diwali", "deepavali"):
        india = _country_holidays("IN", years)
        rows += [(d, "diwali", "Diwali") for d in _days_named(india, "diwali")]
    named = {d for d, _, _ in rows}
    rows += [(d, "public_holiday", label) for d, label in calendar.items() if d not in named]
    return rows


def event_calendar(start: date, end: date, countries: Iterable[str]) -> pl.DataFrame:
    """Event days between start and end (inclusive) for each country.

    Columns: date, country, event (one of EVENTS or 'public_holiday'), name.
    Unknown countries still get the global events (Black Friday, 11.11, Valentine's).
    """
    years = list(range(start.year - 1, end.year + 2))
    rows = []
    for country in sorted({c for c in countries if c}):
        for day, event, name in _country_events(country, years):
            if start <= day <= end:
                rows.append((day, country, event, name))
    frame = pl.DataFrame(rows, schema=CALENDAR_SCHEMA, orient="row")
    return frame.unique(["date", "country", "event"], keep="first").sort("country", "date", "event")


def event_distance_features(
    start: date, end: date, countries: Iterable[str], max_days: int = 45
) -> pl.DataFrame:
    """Per date x country: days_to_<event> and days_since_<event>, plus public_holiday.

    Distances are 0 on an event day and clipped at `max_days` (an event further
    away than that is 'not near'), so a tree sees run-ups and hangovers.
    """
    countries = sorted({c for c in countries if c})
    margin = timedelta(days=max_days + 1)
    calendar = event_calendar(start - margin, end + margin, countries)
    days = np.arange(np.datetime64(start - margin), np.datetime64(end + margin) + 1)
    keep = (days >= np.datetime64(start)) & (days <= np.datetime64(end))
    frames = []
    for country in countries:
        columns: dict[str, object] = {
            "date": days[keep].astype("datetime64[D]"),
            "country": [country] * int(keep.sum()),
        }
        of_country = calendar.filter(pl.col("country") == country)
        for event in EVENTS:
            event_days = of_country.filter(pl.col("event") == event)["date"].to_numpy()
            is_event = np.isin(days, event_days.astype("datetime64[D]"))
            columns[f"days_to_{event}"] = _distance(is_event, forward=True, cap=max_days)[keep]
            columns[f"days_since_{event}"] = _distance(is_event, forward=False, cap=max_days)[keep]
        holiday_days = of_country.filter(pl.col("event") == "public_holiday")["date"].to_numpy()
        columns["public_holiday"] = np.isin(days, holiday_days.astype("datetime64[D]"))[keep]
        frames.append(pl.DataFrame(columns).with_columns(pl.col("date").cast(pl.Date)))
    if not frames:
        return pl.DataFrame(schema={"date": pl.Date, "country": pl.String})
    return pl.concat(frames)


def _distance(is_event: np.ndarray, *, forward: bool, cap: int) -> np.ndarray:
    """Days to the next (forward) or since the last event day, capped."""
    n = len(is_event)
    index = np.arange(n)
    if forward:
        marks = np.where(is_event, index, n + cap)
        nearest = np.minimum.accumulate(marks[::-1])[::-1]
        dist = nearest - index
    else:
        marks = np.where(is_event, index, -(cap + 1))
        nearest = np.maximum.accumulate(marks)
        dist = index - nearest
    return np.minimum(dist, cap).astype(np.int16)
