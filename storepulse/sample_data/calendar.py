"""Daily demand multipliers per market: weekly pattern, Q4, and retail events.

The multiplier scales both new-customer arrivals and repeat purchases, so
events show up in orders, sessions and SKU demand alike.
"""

from __future__ import annotations

from datetime import date, timedelta

import holidays
import numpy as np

from models.events import black_friday  # the one date rule; lift_tests and media use it too

# Monday..Sunday. DTC stores sell most early in the week and on Sunday evening.
WEEKDAY_FACTOR = np.array([1.08, 1.04, 1.0, 0.98, 0.93, 0.92, 1.05])

# Black Friday (Tuesday) .. Cyber Monday: together ~x4 of a normal week.
BF_WEEK_FACTORS = {-3: 2.6, -2: 3.0, -1: 3.8, 0: 5.6, 1: 4.6, 2: 4.2, 3: 5.0}
POST_BFCM_DIP = 0.45  # "then about -60 % for a few weeks"
EVENT_LIFT = 1.32  # 11.11, Prime Day, Christmas, Eid, Diwali, Valentine's: +25-40 %

AMAZON_MARKETS = {"US", "CA", "GB", "DE", "FR", "AU", "SG", "MX", "BR", "AE"}
SEA_MARKETS = {"SG", "MY", "TH"}
CHRISTMAS_MARKETS = {"US", "CA", "GB", "DE", "FR", "AU", "BR", "MX", "SG"}

# Fallbacks where the holidays package has no entry for a market.
DIWALI_FALLBACK = {
    2023: date(2023, 11, 12),
    2024: date(2024, 10, 31),
    2025: date(2025, 10, 20),
    2026: date(2026, 11, 8),
    2027: date(2027, 10, 29),
}
EID_FALLBACK = {2023: date(2023, 4, 21), 2024: date(2024, 4, 10), 2025: date(2025, 3, 30), 2026: date(2026, 3, 20), 2027: date(2027, 3, 9)}  # fmt: skip


def prime_day(year: int) -> date:
    """Second Tuesday of July (first of the two Prime Day days)."""
    first = date(year, 7, 1)
    return first + timedelta(days=(1 - first.weekday()) % 7 + 7)


def _holiday_dates(country: str, years: list[int], name: str) -> list[date]:
    try:
        found = holidays.country_holidays(country, years=years)
    except NotImplementedError:
        return []
    return sorted(day for day, label in found.items() if label == name)


def eid_al_fitr(country: str, years: list[int]) -> list[date]:
    days = _holiday_dates(country, years, "Eid al-Fitr")
    found_years = {d.year for d in days}
    return days + [EID_FALLBACK[y] for y in years if y not in found_years and y in EID_FALLBACK]


def diwali(years: list[int]) -> list[date]:
    days = _holiday_dates("SG", years, "Diwali")
    found_years = {d.year for d in days}
    return days + [
        DIWALI_FALLBACK[y] for y in years if y not in found_years and y in DIWALI_FALLBACK
    ]


def demand_multiplier(country: str, start: date, n_days: int) -> np.ndarray:
    """Multiplier per day (1.0 = an ordinary weekday), length n_days from start."""
    day0 = np.datetime64(start, "D")
    days = day0 + np.arange(n_days)
    weekday = (days.astype("int64") - 4) % 7  # 1970-01-01 was a Thursday
    mult = WEEKDAY_FACTOR[weekday].copy()
    month = days.astype("datetime64[M]").astype(int) % 12 + 1
    mult *= np.where(np.isin(month, [10, 11, 12]), 1.15, 1.0)
    mult *= np.where(np.isin(month, [1, 2]), 0.9, 1.0)

    def index(d: date) -> int:
        return (d - start).days

    def lift(first: date, length: int, factor: float) -> None:
        i0 = index(first)
        lo, hi = max(i0, 0), min(i0 + length, n_days)
        if lo < hi:
            mult[lo:hi] *= factor

    years = list(range(start.year - 1, start.year + n_days // 365 + 2))
    for year in years:
        bf = black_friday(year)
        for offset, factor in BF_WEEK_FACTORS.items():
            lift(bf + timedelta(days=offset), 1, factor)
        lift(bf + timedelta(days=4), 17, POST_BFCM_DIP)
        if country in CHRISTMAS_MARKETS:
            # Last shipping days before Christmas, after the post-BFCM dip.
            lift(date(year, 12, 21), 3, EVENT_LIFT)
            lift(date(year, 12, 25), 2, 0.6)
        valentine = date(year, 6, 12) if country == "BR" else date(year, 2, 14)
        lift(valentine - timedelta(days=6), 7, EVENT_LIFT)
        if country in AMAZON_MARKETS:
            lift(prime_day(year), 2, EVENT_LIFT)
        lift(date(year, 11, 11), 1, 1.6 if country in SEA_MARKETS else 1.1)
        if country in SEA_MARKETS:
            lift(date(year, 12, 12), 1, EVENT_LIFT)
    if country in {"AE", "MY"}:
        for eid in eid_al_fitr(country, years):
            lift(eid - timedelta(days=10), 10, EVENT_LIFT)  # last ten nights of Ramadan
            lift(eid, 2, 0.7)
    if country in {"SG", "MY"}:
        for festival in diwali(years):
            lift(festival - timedelta(days=7), 7, 1.25)
    return mult
