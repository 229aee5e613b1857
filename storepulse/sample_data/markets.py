"""Static market facts the generator draws from: currencies, time zones, names, payments.

Figures are ranges from industry reports on cross-border DTC stores (see
docs in ../shared/SAMPLE_DATA.md); the generator draws per store from them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Market:
    country: str
    currency: str
    timezone: str
    region: str  # na, eu, sea, latam, mena, oceania
    calling_code: str
    usd_per_unit: float  # starting FX level; the FX walk drifts from here
    aov_usd_range: tuple[float, float]
    tax_rate: float  # added on top of (subtotal - discount): keeps total = lines - discount + shipping + tax
    shipping_fee: float  # flat fee in USD below the free-shipping threshold
    mobile_share: float  # share of sessions on mobile (SEA higher)
    growth_per_year: float  # emerging markets ~22 %/yr, mature ~12 %/yr
    language: str  # which name list to use


MARKETS: dict[str, Market] = {
    m.country: m
    for m in [
        Market(
            "US", "USD", "America/New_York", "na", "1", 1.0, (55, 90), 0.07, 6.95, 0.76, 0.12, "en"
        ),
        Market(
            "CA", "CAD", "America/Toronto", "na", "1", 0.73, (50, 85), 0.13, 8.95, 0.77, 0.12, "en"
        ),
        Market(
            "GB", "GBP", "Europe/London", "eu", "44", 1.27, (50, 85), 0.20, 4.95, 0.78, 0.12, "en"
        ),
        Market(
            "DE", "EUR", "Europe/Berlin", "eu", "49", 1.08, (50, 85), 0.19, 4.95, 0.76, 0.12, "de"
        ),
        Market(
            "FR", "EUR", "Europe/Paris", "eu", "33", 1.08, (48, 80), 0.20, 4.95, 0.77, 0.12, "fr"
        ),
        Market(
            "AU",
            "AUD",
            "Australia/Sydney",
            "oceania",
            "61",
            0.66,
            (50, 85),
            0.10,
            9.95,
            0.78,
            0.12,
            "en",
        ),
        Market(
            "SG", "SGD", "Asia/Singapore", "sea", "65", 0.74, (30, 55), 0.09, 4.0, 0.83, 0.22, "zh"
        ),
        Market(
            "MY",
            "MYR",
            "Asia/Kuala_Lumpur",
            "sea",
            "60",
            0.22,
            (25, 45),
            0.08,
            2.5,
            0.84,
            0.22,
            "ms",
        ),
        Market(
            "TH", "THB", "Asia/Bangkok", "sea", "66", 0.028, (25, 45), 0.07, 2.0, 0.84, 0.22, "th"
        ),
        Market(
            "BR",
            "BRL",
            "America/Sao_Paulo",
            "latam",
            "55",
            0.18,
            (25, 50),
            0.0,
            3.5,
            0.80,
            0.22,
            "pt",
        ),
        Market(
            "MX",
            "MXN",
            "America/Mexico_City",
            "latam",
            "52",
            0.055,
            (25, 50),
            0.16,
            3.5,
            0.80,
            0.22,
            "es",
        ),
        Market(
            "AE", "AED", "Asia/Dubai", "mena", "971", 0.2723, (45, 85), 0.05, 5.0, 0.80, 0.22, "ar"
        ),
    ]
}

# Share of stores per market. North America plus South-East Asia carry ~75 % of sales.
STORE_MARKET_WEIGHTS: dict[str, float] = {
    "US": 0.30, "CA": 0.07, "GB": 0.07, "DE": 0.06, "FR": 0.04, "AU": 0.05,
    "SG": 0.09, "MY": 0.09, "TH": 0.08, "BR": 0.06, "MX": 0.05, "AE": 0.04,
}  # fmt: skip

# Neighbouring markets a store also ships to (cross-border share of its customers).
CROSS_BORDER: dict[str, list[str]] = {
    "na": ["US", "CA"], "eu": ["DE", "FR", "GB"], "sea": ["SG", "MY", "TH"],
    "latam": ["BR", "MX"], "mena": ["AE"], "oceania": ["AU"],
}  # fmt: skip

# Payment mix by region (method, weight). EU cards ~58 %, SEA e-wallets ~72 %, LatAm COD ~42 %.
PAYMENT_MIX: dict[str, list[tuple[str, float]]] = {
    "US": [("card", 0.58), ("paypal", 0.17), ("apple_pay", 0.12), ("shop_pay", 0.13)],
    "CA": [("card", 0.62), ("paypal", 0.16), ("apple_pay", 0.10), ("shop_pay", 0.12)],
    "GB": [("card", 0.58), ("paypal", 0.20), ("apple_pay", 0.12), ("klarna", 0.10)],
    "DE": [("card", 0.58), ("paypal", 0.24), ("klarna", 0.10), ("sepa_debit", 0.08)],
    "FR": [("card", 0.60), ("paypal", 0.20), ("apple_pay", 0.12), ("klarna", 0.08)],
    "AU": [("card", 0.55), ("paypal", 0.15), ("afterpay", 0.15), ("apple_pay", 0.15)],
    "SG": [("grabpay", 0.40), ("paynow", 0.22), ("shopeepay", 0.10), ("card", 0.28)],
    "MY": [("touch_n_go", 0.34), ("grabpay", 0.26), ("boost", 0.12), ("card", 0.20), ("cod", 0.08)],
    "TH": [
        ("promptpay", 0.38),
        ("truemoney", 0.24),
        ("shopeepay", 0.10),
        ("card", 0.16),
        ("cod", 0.12),
    ],
    "BR": [("pix", 0.30), ("boleto", 0.12), ("card", 0.40), ("cod", 0.18)],
    "MX": [("oxxo", 0.22), ("card", 0.38), ("cod", 0.30), ("mercado_pago", 0.10)],
    "AE": [("card", 0.45), ("apple_pay", 0.15), ("cod", 0.40)],
}

CATEGORY_WEIGHTS: dict[str, float] = {
    "electronics": 0.28, "home": 0.21, "apparel": 0.17, "beauty": 0.14, "baby": 0.10, "pets": 0.10,
}  # fmt: skip

# Relative price level and refund propensity per category (apparel returns most).
CATEGORY_PRICE_FACTOR = {
    "electronics": 1.3,
    "home": 1.1,
    "apparel": 0.9,
    "beauty": 0.7,
    "baby": 0.9,
    "pets": 0.8,
}
CATEGORY_REFUND_RATE = {
    "electronics": 0.08,
    "home": 0.08,
    "apparel": 0.10,
    "beauty": 0.075,
    "baby": 0.08,
    "pets": 0.075,
}

PRODUCT_WORDS: dict[str, tuple[list[str], list[str]]] = {
    "electronics": (
        ["Wireless", "Smart", "Portable", "Compact", "Pro", "Ultra", "Mini", "Magnetic", "Fast", "Noise-Cancelling"],
        ["Earbuds", "Charger", "Power Bank", "Speaker", "Phone Case", "USB-C Hub", "Smartwatch Band", "Ring Light", "Webcam", "Keyboard", "Mouse", "Cable"],
    ),
    "home": (
        ["Linen", "Ceramic", "Bamboo", "Minimal", "Nordic", "Woven", "Glass", "Oak", "Cotton", "Stoneware"],
        ["Vase", "Throw Blanket", "Cushion Cover", "Table Lamp", "Mug Set", "Storage Basket", "Candle", "Wall Shelf", "Serving Bowl", "Doormat"],
    ),
    "apparel": (
        ["Classic", "Oversized", "Relaxed", "Slim", "Organic", "Everyday", "Vintage", "Linen", "Merino", "Cropped"],
        ["T-Shirt", "Hoodie", "Joggers", "Dress", "Cardigan", "Shorts", "Socks 3-Pack", "Cap", "Jacket", "Leggings"],
    ),
    "beauty": (
        ["Hydrating", "Vitamin C", "Gentle", "Matte", "Glow", "Niacinamide", "Rose", "Daily", "Overnight", "Clay"],
        ["Serum", "Cleanser", "Moisturiser", "Lip Tint", "Sunscreen SPF50", "Face Mask", "Toner", "Eye Cream", "Body Oil", "Hair Mask"],
    ),
    "baby": (
        ["Soft", "Organic", "Muslin", "Bamboo", "Sleepy", "Tiny", "Cosy", "Silicone", "Knitted", "Gentle"],
        ["Swaddle", "Bib Set", "Teether", "Romper", "Baby Carrier", "Bottle", "Play Mat", "Sleep Sack", "Rattle", "Blanket"],
    ),
    "pets": (
        ["Chew-Proof", "Cosy", "Reflective", "Orthopedic", "Natural", "Interactive", "Grain-Free", "Washable", "Adjustable", "Calming"],
        ["Dog Bed", "Cat Toy", "Leash", "Harness", "Treats", "Litter Mat", "Feeder", "Scratching Post", "Collar", "Grooming Brush"],
    ),
}  # fmt: skip

FIRST_NAMES: dict[str, list[str]] = {
    "en": ["Emma", "Olivia", "Ava", "Mia", "Sophia", "Liam", "Noah", "James", "Lucas", "Ethan", "Chloe", "Grace", "Jack", "Ruby", "Harper", "Mason", "Ella", "Leo", "Zoe", "Owen"],
    "de": ["Lena", "Hannah", "Mia", "Lea", "Anna", "Leon", "Paul", "Jonas", "Felix", "Lukas", "Marie", "Sophie", "Finn", "Emil", "Clara", "Max", "Laura", "Tim", "Julia", "Moritz"],
    "fr": ["Camille", "Léa", "Manon", "Chloé", "Inès", "Louis", "Hugo", "Jules", "Arthur", "Gabriel", "Zoé", "Lucie", "Nathan", "Théo", "Alice", "Raphaël", "Sarah", "Tom", "Jade", "Noé"],
    "zh": ["Wei Ling", "Jia Hui", "Xin Yi", "Hui Min", "Jun Jie", "Wei Jie", "Zhi Hao", "Mei Ling", "Kai Xuan", "Yu Xuan", "Shu Fen", "Jing Yi", "Ming", "Li Na", "Jun Wei", "Siew Ling", "Hong", "Yan Ting", "Zi Yi", "Rui"],
    "ms": ["Nur Aisyah", "Siti", "Aina", "Farah", "Nurul", "Muhammad", "Ahmad", "Haziq", "Amir", "Hafiz", "Aiman", "Irfan", "Sofia", "Alya", "Danish", "Balqis", "Syafiq", "Amani", "Arif", "Zara"],
    "th": ["Ploy", "Nicha", "Fah", "Mint", "Ploypailin", "Somchai", "Anan", "Krit", "Nattapong", "Chaiwat", "Siriporn", "Kanya", "Pim", "Arthit", "Preeya", "Tanawat", "Warin", "Benz", "Nong", "Kittisak"],
    "pt": ["Ana", "Maria", "Júlia", "Beatriz", "Larissa", "João", "Pedro", "Lucas", "Gabriel", "Matheus", "Camila", "Fernanda", "Rafael", "Bruno", "Letícia", "Thiago", "Isabela", "Gustavo", "Mariana", "Felipe"],
    "es": ["Sofía", "Valentina", "Camila", "Ximena", "Regina", "Santiago", "Mateo", "Diego", "Emiliano", "Leonardo", "Fernanda", "Daniela", "Alejandro", "Andrea", "Carlos", "Lucía", "Javier", "Paola", "Miguel", "Renata"],
    "ar": ["Fatima", "Aisha", "Mariam", "Noor", "Layla", "Mohammed", "Ahmed", "Omar", "Yousef", "Khalid", "Sara", "Huda", "Hamdan", "Rashid", "Amna", "Saeed", "Hind", "Zayed", "Reem", "Ali"],
}  # fmt: skip

LAST_NAMES: dict[str, list[str]] = {
    "en": ["Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Taylor", "Clark", "Walker", "Hall", "Young", "King", "Wright", "Scott", "Green", "Baker", "Adams", "Turner"],
    "de": ["Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann", "Koch", "Richter", "Klein", "Wolf", "Neumann", "Schröder", "Braun", "Zimmermann", "Krüger", "Hartmann"],
    "fr": ["Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau", "Simon", "Laurent", "Lefèvre", "Michel", "Garcia", "David", "Bertrand", "Roux", "Vincent", "Fournier"],
    "zh": ["Tan", "Lim", "Lee", "Ng", "Ong", "Wong", "Goh", "Chua", "Chan", "Koh", "Teo", "Ang", "Yeo", "Tay", "Ho", "Low", "Toh", "Sim", "Chong", "Chia"],
    "ms": ["Abdullah", "Ismail", "Ibrahim", "Hassan", "Rahman", "Aziz", "Hamid", "Yusof", "Omar", "Ahmad", "Razak", "Salleh", "Osman", "Hussin", "Kassim", "Mohamad", "Zainal", "Ali", "Bakar", "Rashid"],
    "th": ["Saetang", "Srisuk", "Wongsa", "Chaiyaporn", "Boonmee", "Rattanakul", "Kaewmanee", "Somboon", "Thongdee", "Phromma", "Jaidee", "Suksawat", "Chanthara", "Intharasuk", "Pongpanich", "Sukjai", "Meesuk", "Thanakit", "Nakprasert", "Wattana"],
    "pt": ["Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira", "Lima", "Gomes", "Costa", "Ribeiro", "Martins", "Carvalho", "Almeida", "Lopes", "Soares", "Fernandes", "Vieira", "Barbosa"],
    "es": ["Hernández", "García", "Martínez", "López", "González", "Pérez", "Rodríguez", "Sánchez", "Ramírez", "Cruz", "Flores", "Gómez", "Morales", "Vázquez", "Reyes", "Jiménez", "Torres", "Díaz", "Gutiérrez", "Ruiz"],
    "ar": ["Al Mansoori", "Al Hashimi", "Al Nuaimi", "Al Ketbi", "Al Suwaidi", "Al Mazrouei", "Al Shamsi", "Al Dhaheri", "Al Falasi", "Al Marri", "Haddad", "Khoury", "Nasser", "Saleh", "Hamdan", "Al Qasimi", "Al Balushi", "Karim", "Aziz", "Farouk"],
}  # fmt: skip

# Reserved example domains (RFC 2606 / RFC 6761): realistic-looking, never real mailboxes.
EMAIL_DOMAINS = [
    "example.com",
    "example.net",
    "example.org",
    "mail.example",
    "inbox.example",
    "post.example",
]

STORE_NAME_WORDS = (
    ["Nova", "Luma", "Kiko", "Atlas", "Bloom", "Cedar", "Orbit", "Pebble", "Tidal", "Verve", "Maple", "Solis", "Aurora", "Ember", "Fjord", "Juniper", "Koa", "Mosa", "Nimbus", "Quill"],
    {
        "electronics": ["Gadgets", "Tech", "Devices", "Gear"],
        "home": ["Home", "Living", "Nest", "Interiors"],
        "apparel": ["Apparel", "Wear", "Threads", "Studio"],
        "beauty": ["Beauty", "Skin", "Glow", "Botanics"],
        "baby": ["Baby", "Little Ones", "Kids", "Nursery"],
        "pets": ["Pets", "Paws", "Pet Co", "Tails"],
    },
)  # fmt: skip
