"""Fake but realistic-looking identities: names, e-mails on reserved domains, phone numbers."""

from __future__ import annotations

import unicodedata

import numpy as np

from .markets import EMAIL_DOMAINS, FIRST_NAMES, LAST_NAMES, MARKETS


def ascii_slug(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


def draw_identities(
    rng: np.random.Generator, countries: np.ndarray, serial: np.ndarray
) -> dict[str, np.ndarray]:
    """First/last names by the customer's market language, a unique e-mail, an E.164 phone."""
    n = countries.size
    first = np.empty(n, dtype=object)
    last = np.empty(n, dtype=object)
    phone = np.empty(n, dtype=object)
    for country in np.unique(countries):
        mask = countries == country
        market = MARKETS[str(country)]
        firsts = np.array(FIRST_NAMES[market.language], dtype=object)
        lasts = np.array(LAST_NAMES[market.language], dtype=object)
        first[mask] = firsts[rng.integers(0, firsts.size, mask.sum())]
        last[mask] = lasts[rng.integers(0, lasts.size, mask.sum())]
        # 555-01xx style numbers are reserved for fiction in NANP; elsewhere a fixed fake block.
        subscriber = rng.integers(0, 10_000, mask.sum())
        if market.calling_code == "1":
            numbers = [
                f"+1{int(a)}5550{s % 1000:03d}"
                for a, s in zip(rng.integers(201, 989, mask.sum()), subscriber, strict=True)
            ]
        else:
            numbers = [
                f"+{market.calling_code}7000{s:04d}{d}"
                for s, d in zip(subscriber, rng.integers(0, 10, mask.sum()), strict=True)
            ]
        phone[mask] = numbers
    domains = np.array(EMAIL_DOMAINS, dtype=object)[rng.integers(0, len(EMAIL_DOMAINS), n)]
    style = rng.integers(0, 3, n)
    emails = np.empty(n, dtype=object)
    for i in range(n):
        f, l_, s = ascii_slug(first[i]), ascii_slug(last[i]), int(serial[i])
        if style[i] == 0:
            local = f"{f}.{l_}{s}"
        elif style[i] == 1:
            local = f"{f[:1]}{l_}{s}"
        else:
            local = f"{f}{s}"
        emails[i] = f"{local}@{domains[i]}"
    return {"first_name": first, "last_name": last, "email": emails, "phone": phone}


def messy_phone(phone: str, rng: np.random.Generator) -> str:
    """The same number as a person might type it: spaces, dashes, brackets, a 00 prefix."""
    digits = phone.lstrip("+")
    style = int(rng.integers(0, 4))
    if phone.startswith("+1") and style < 2:
        return f"({digits[1:4]}) {digits[4:7]}-{digits[7:]}"
    if style == 0:
        return f"00{digits}"
    if style == 1:
        return f"+{digits[:2]} {digits[2:5]} {digits[5:]}"
    if style == 2:
        return "-".join([digits[:3], digits[3:6], digits[6:]])
    return digits
