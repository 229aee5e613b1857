"""Marketing channel from UTM tags, one vocabulary for orders and sessions.

Vocabulary: meta, google, tiktok, pinterest, email, organic, affiliate, influencer,
direct, other. The rules are data (below) so the Python function and the SQL
expression used by staging cannot drift apart.
"""

from __future__ import annotations

CHANNELS = (
    "meta",
    "google",
    "tiktok",
    "pinterest",
    "email",
    "organic",
    "affiliate",
    "influencer",
    "direct",
    "other",
)

# First match wins. Medium rules come first: 'google / organic' is organic and
# 'instagram / influencer' is influencer, whatever the source says.
MEDIUM_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("email", ("email", "e-mail", "newsletter", "sms", "klaviyo", "flow")),
    ("affiliate", ("affiliate", "affiliates", "partner", "partnership")),
    ("influencer", ("influencer", "influencers", "creator", "ugc", "ambassador")),
    ("organic", ("organic", "seo", "referral")),
)
SOURCE_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("email", ("email", "klaviyo", "mailchimp", "omnisend", "newsletter", "attentive",
               "postscript", "sendinblue", "brevo")),
    ("affiliate", ("affiliate", "awin", "impact", "cj", "rakuten", "shareasale", "partnerize")),
    ("influencer", ("influencer", "creator", "ltk", "grin")),
    ("meta", ("meta", "facebook", "fb", "instagram", "ig", "messenger", "audience_network",
              "facebook_ads", "meta_ads", "instagram_ads", "an")),
    ("google", ("google", "adwords", "google_ads", "googleads", "youtube", "gdn", "pmax",
                "shopping", "google_shopping")),
    ("tiktok", ("tiktok", "tik_tok", "tiktok_ads", "tt")),
    ("pinterest", ("pinterest", "pin", "pinterest_ads")),
    ("organic", ("organic", "seo", "bing_organic", "duckduckgo")),
    ("direct", ("direct", "(direct)", "none", "(none)")),
)  # fmt: skip


def _clean(value: str | None) -> str:
    return (value or "").strip().lower().replace(" ", "_")


def channel_from_utm(source: str | None, medium: str | None) -> str:
    """'facebook','cpc' -> 'meta'; 'google','organic' -> 'organic'; no tags -> 'direct'."""
    src, med = _clean(source), _clean(medium)
    if not src and not med:
        return "direct"
    if src in CHANNELS and src not in ("other",) and not med:
        return src
    for channel, mediums in MEDIUM_RULES:
        if med in mediums:
            return channel
    for channel, sources in SOURCE_RULES:
        if src in sources:
            return channel
    if not src and med in ("(none)", "none", "direct"):
        return "direct"
    return "other"


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def channel_sql(source_expr: str, medium_expr: str) -> str:
    """The same rules as `channel_from_utm`, as a DuckDB expression over two SQL expressions."""
    src = f"coalesce(replace(lower(trim({source_expr})), ' ', '_'), '')"
    med = f"coalesce(replace(lower(trim({medium_expr})), ' ', '_'), '')"
    known = _sql_list(tuple(c for c in CHANNELS if c != "other"))
    branches = [
        f"when {src} = '' and {med} = '' then 'direct'",
        f"when {src} in ({known}) and {med} = '' then {src}",
    ]
    branches += [f"when {med} in ({_sql_list(m)}) then '{c}'" for c, m in MEDIUM_RULES]
    branches += [f"when {src} in ({_sql_list(s)}) then '{c}'" for c, s in SOURCE_RULES]
    branches.append(f"when {src} = '' and {med} in ('(none)', 'none', 'direct') then 'direct'")
    return "case " + " ".join(branches) + " else 'other' end"
