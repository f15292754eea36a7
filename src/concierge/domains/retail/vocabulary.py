"""Word lists the retail store generator draws from: products, names, places, payment brands.

Kept apart from the generator so that the drawing logic stays readable and the lists can grow
without touching it. Every list is a tuple: its order is part of the generator's determinism.
"""

from __future__ import annotations

from typing import NamedTuple


class ProductType(NamedTuple):
    """A kind of product the store sells; its variants are combinations of the option values."""

    name: str
    base_cents: int
    options: tuple[tuple[str, tuple[str, ...]], ...]


_COLORS = ("black", "white", "navy", "olive", "burgundy", "sand")
_SIZES = ("XS", "S", "M", "L", "XL", "XXL")

CATALOGUE: tuple[ProductType, ...] = (
    ProductType("T-Shirt", 2400, (("color", _COLORS), ("size", _SIZES),
                                  ("material", ("organic cotton", "cotton blend", "linen")))),
    ProductType("Hoodie", 5900, (("color", ("charcoal", "heather grey", "navy", "forest green")),
                                 ("size", _SIZES[1:]), ("fit", ("regular", "relaxed")))),
    ProductType("Rain Jacket", 11900, (("color", ("yellow", "black", "teal", "red")), ("size", _SIZES[1:5]),
                                       ("hood", ("packable", "fixed")))),
    ProductType("Denim Jeans", 7400, (("waist", ("28", "30", "32", "34", "36")), ("length", ("30", "32", "34")),
                                      ("cut", ("slim", "straight", "bootcut")), ("wash", ("light", "dark")))),
    ProductType("Wool Socks", 1600, (("size", ("S", "M", "L")), ("cushion", ("light", "medium", "heavy")),
                                     ("color", ("grey", "oatmeal", "black")))),
    ProductType("Baseball Cap", 2200, (("color", ("black", "khaki", "navy", "red")),
                                       ("closure", ("snapback", "strapback", "fitted")))),
    ProductType("Trail Running Shoes", 13900, (("size", ("7", "8", "9", "10", "11", "12")),
                                               ("width", ("regular", "wide")),
                                               ("color", ("slate", "orange", "black")))),
    ProductType("Leather Wallet", 4500, (("color", ("tan", "brown", "black")),
                                         ("style", ("bifold", "trifold", "card sleeve")))),
    ProductType("Duffel Bag", 8900, (("capacity", ("30L", "45L", "60L")), ("material", ("canvas", "ripstop nylon")),
                                     ("color", ("olive", "black", "navy")))),
    ProductType("Laptop", 124900, (("screen size", ("13.3-inch", "14-inch", "16-inch")),
                                   ("processor", ("8-core", "10-core", "12-core")),
                                   ("memory", ("16GB", "32GB", "64GB")), ("storage", ("512GB", "1TB", "2TB")),
                                   ("color", ("silver", "graphite")))),
    ProductType("Monitor", 32900, (("size", ("24-inch", "27-inch", "32-inch")), ("resolution", ("1440p", "4K")),
                                   ("refresh rate", ("60Hz", "144Hz")))),
    ProductType("Wireless Router", 18900, (("standard", ("Wi-Fi 6", "Wi-Fi 6E", "Wi-Fi 7")),
                                           ("pack", ("single", "2-pack", "3-pack")))),
    ProductType("Smart Speaker", 9900, (("color", ("chalk", "charcoal", "sky")), ("assistant", ("built-in", "none")),
                                        ("size", ("mini", "standard")))),
    ProductType("Noise-Cancelling Headphones", 29900, (("color", ("black", "silver", "midnight blue")),
                                                       ("form", ("over-ear", "on-ear")),
                                                       ("connection", ("Bluetooth", "Bluetooth + USB-C")))),
    ProductType("Fitness Tracker", 12900, (("band", ("silicone", "woven", "steel")),
                                           ("color", ("black", "rose", "mint")), ("GPS", ("yes", "no")))),
    ProductType("Camera Drone", 79900, (("camera", ("2.7K", "4K", "5.1K")), ("kit", ("standard", "fly more")))),
    ProductType("Power Bank", 4900, (("capacity", ("10000mAh", "20000mAh", "26800mAh")),
                                     ("ports", ("USB-C", "USB-C + USB-A")), ("color", ("black", "white")))),
    ProductType("Blender", 14900, (("jar", ("48 oz", "64 oz")), ("motor", ("1000W", "1500W")),
                                   ("color", ("black", "red", "stainless")))),
    ProductType("Air Fryer", 11900, (("capacity", ("4 qt", "6 qt", "8 qt")), ("baskets", ("single", "dual")),
                                     ("finish", ("black", "white")))),
    ProductType("Cast Iron Skillet", 3900, (("diameter", ("8-inch", "10-inch", "12-inch")),
                                            ("seasoning", ("pre-seasoned", "enamelled")))),
    ProductType("Chef's Knife", 8900, (("blade", ("6-inch", "8-inch", "10-inch")),
                                       ("steel", ("German", "Japanese", "Damascus")),
                                       ("handle", ("wood", "composite")))),
    ProductType("Stand Mixer", 37900, (("bowl", ("4.5 qt", "5 qt", "6 qt")),
                                       ("color", ("cream", "cobalt", "graphite", "red")))),
    ProductType("Rice Cooker", 8900, (("capacity", ("3 cup", "5.5 cup", "10 cup")),
                                      ("heating", ("conventional", "induction")))),
    ProductType("Water Bottle", 2900, (("volume", ("500ml", "750ml", "1L")),
                                       ("lid", ("straw", "chug", "twist")),
                                       ("color", ("ocean", "stone", "black", "coral")))),
    ProductType("Travel Mug", 2600, (("volume", ("12 oz", "16 oz", "20 oz")), ("color", ("matte black", "white", "sage")))),
    ProductType("Camping Tent", 24900, (("capacity", ("1-person", "2-person", "4-person")),
                                        ("season", ("3-season", "4-season")), ("color", ("green", "orange")))),
    ProductType("Sleeping Bag", 15900, (("rating", ("20F", "30F", "40F")), ("fill", ("down", "synthetic")),
                                        ("length", ("regular", "long")))),
    ProductType("Trekking Poles", 7900, (("material", ("aluminium", "carbon")), ("lock", ("twist", "lever")))),
    ProductType("Tennis Racket", 17900, (("head size", ("98 sq in", "100 sq in", "105 sq in")),
                                         ("grip", ("4 1/8", "4 1/4", "4 3/8")))),
    ProductType("Resistance Bands", 2900, (("set", ("light", "medium", "heavy", "mixed")),
                                           ("type", ("loop", "tube with handles")))),
    ProductType("Standing Desk", 49900, (("top", ("48x24", "60x30", "72x30")), ("finish", ("oak", "walnut", "white")),
                                         ("frame", ("black", "silver")))),
    ProductType("Floor Lamp", 12900, (("shade", ("linen", "metal", "paper")), ("finish", ("brass", "black", "white")),
                                      ("dimmable", ("yes", "no")))),
    ProductType("Throw Blanket", 5900, (("material", ("wool", "cotton", "fleece")),
                                        ("color", ("rust", "cream", "slate", "mustard")))),
    ProductType("Bed Sheet Set", 8900, (("size", ("twin", "full", "queen", "king")),
                                        ("fabric", ("percale", "sateen", "linen")),
                                        ("color", ("white", "ivory", "stone")))),
    ProductType("Scented Candle", 3200, (("scent", ("cedar", "fig", "sea salt", "vanilla")),
                                         ("size", ("8 oz", "14 oz")))),
    ProductType("Board Game", 4400, (("title", ("Harbour Masters", "Sky Orchard", "Lantern Road")),
                                     ("edition", ("standard", "deluxe")))),
    ProductType("Acoustic Guitar", 42900, (("body", ("dreadnought", "concert", "parlour")),
                                           ("top", ("spruce", "cedar", "mahogany")),
                                           ("electronics", ("yes", "no")))),
    ProductType("Watercolour Set", 3600, (("pans", ("12", "24", "36")), ("grade", ("student", "artist")))),
    ProductType("Dog Harness", 3400, (("size", ("XS", "S", "M", "L")), ("color", ("red", "blue", "black", "pink")))),
    ProductType("Cat Tree", 11900, (("height", ("3 ft", "5 ft", "6 ft")), ("color", ("beige", "grey")))),
    ProductType("Plant Pot", 2400, (("diameter", ("6-inch", "8-inch", "12-inch")),
                                    ("material", ("terracotta", "ceramic", "concrete")))),
    ProductType("Umbrella", 3900, (("size", ("compact", "golf")), ("color", ("black", "navy", "clear")),
                                   ("opening", ("manual", "automatic")))),
)

FIRST_NAMES: tuple[str, ...] = (
    "Ada", "Adrian", "Aisha", "Alma", "Amir", "Ana", "Andre", "Anika", "Arjun", "Astrid", "Beatriz", "Benedict",
    "Bianca", "Caleb", "Camille", "Carmen", "Chidi", "Clara", "Dario", "Daniela", "Dev", "Elena", "Elias",
    "Emeka", "Esme", "Farah", "Felix", "Freya", "Gabriel", "Greta", "Hana", "Hugo", "Ines", "Ivo", "Jonah",
    "Jia", "Kaito", "Kalani", "Keisha", "Kofi", "Lars", "Leila", "Lorenzo", "Lucia", "Malik", "Mara", "Mateo",
    "Maya", "Milo", "Nadia", "Nikhil", "Nora", "Oskar", "Olu", "Paloma", "Pedro", "Priya", "Quinn", "Rafael",
    "Rana", "Rohan", "Rosa", "Ruth", "Saanvi", "Samir", "Sana", "Selin", "Silas", "Sofia", "Soren", "Tariq",
    "Thea", "Tobias", "Uma", "Valentina", "Vikram", "Wanjiru", "Wes", "Ximena", "Yael", "Yusuf", "Zara", "Zoe",
    "Zeke",
)

LAST_NAMES: tuple[str, ...] = (
    "Abara", "Adeyemi", "Almeida", "Andersen", "Baptiste", "Bauer", "Bergstrom", "Castillo", "Chowdhury",
    "Costa", "Dalton", "Delgado", "Dubois", "Eriksen", "Esposito", "Fischer", "Fonseca", "Gallagher", "Gupta",
    "Haddad", "Halvorsen", "Hoang", "Ibarra", "Iyer", "Jansen", "Kahale", "Kaminski", "Kaur", "Keller",
    "Kimura", "Lachance", "Lindqvist", "Lopez", "Mahlangu", "Marchetti", "Mbeki", "Mendoza", "Moreau",
    "Nakamura", "Nguyen", "Novak", "Obi", "Okafor", "Olsen", "Ortega", "Park", "Petrov", "Quintero", "Ramos",
    "Rasmussen", "Reyes", "Rossi", "Sandoval", "Sato", "Schmidt", "Serrano", "Shah", "Sokolov", "Sullivan",
    "Tanaka", "Thorne", "Torres", "Vance", "Varga", "Vasquez", "Wallace", "Weber", "Whitaker", "Yamada",
    "Yilmaz", "Zamora", "Zhou",
)

# (city, state, first three digits of the city's postal codes)
CITIES: tuple[tuple[str, str, str], ...] = (
    ("Seattle", "WA", "981"), ("Spokane", "WA", "992"), ("Portland", "OR", "972"), ("Eugene", "OR", "974"),
    ("Boise", "ID", "837"), ("Salt Lake City", "UT", "841"), ("Reno", "NV", "895"), ("Las Vegas", "NV", "891"),
    ("Sacramento", "CA", "958"), ("Oakland", "CA", "946"), ("Fresno", "CA", "937"), ("Los Angeles", "CA", "900"),
    ("Tucson", "AZ", "857"), ("Albuquerque", "NM", "871"), ("Santa Fe", "NM", "875"), ("Boulder", "CO", "803"),
    ("Omaha", "NE", "681"), ("Kansas City", "MO", "641"), ("St. Louis", "MO", "631"), ("Minneapolis", "MN", "554"),
    ("Madison", "WI", "537"), ("Milwaukee", "WI", "532"), ("Chicago", "IL", "606"), ("Detroit", "MI", "482"),
    ("Grand Rapids", "MI", "495"), ("Cleveland", "OH", "441"), ("Cincinnati", "OH", "452"),
    ("Pittsburgh", "PA", "152"), ("Buffalo", "NY", "142"), ("Albany", "NY", "122"), ("Brooklyn", "NY", "112"),
    ("Boston", "MA", "021"), ("Providence", "RI", "029"), ("Hartford", "CT", "061"), ("Burlington", "VT", "054"),
    ("Portland", "ME", "041"), ("Baltimore", "MD", "212"), ("Richmond", "VA", "232"), ("Raleigh", "NC", "276"),
    ("Nashville", "TN", "372"), ("Memphis", "TN", "381"), ("Atlanta", "GA", "303"), ("Savannah", "GA", "314"),
    ("Orlando", "FL", "328"), ("Tampa", "FL", "336"), ("Miami", "FL", "331"), ("New Orleans", "LA", "701"),
    ("Houston", "TX", "770"), ("El Paso", "TX", "799"), ("Oklahoma City", "OK", "731"),
    ("Little Rock", "AR", "722"), ("Louisville", "KY", "402"), ("Indianapolis", "IN", "462"),
    ("Des Moines", "IA", "503"), ("Anchorage", "AK", "995"), ("Honolulu", "HI", "968"),
)

STREET_NAMES: tuple[str, ...] = (
    "Alder", "Beacon", "Birchwood", "Chestnut", "Cobblestone", "Fairmont", "Foxglove", "Granite", "Harbor",
    "Heron", "Juniper", "Kingsley", "Lakeview", "Linden", "Magnolia", "Marigold", "Meadow", "Mill", "Northgate",
    "Oakridge", "Orchard", "Pinecrest", "Prospect", "Quarry", "Ridgeview", "Riverside", "Summit", "Sycamore",
    "Thornton", "Willow Creek",
)

STREET_KINDS: tuple[str, ...] = (
    "Street", "Avenue", "Road", "Lane", "Court", "Way", "Place", "Boulevard", "Terrace", "Drive",
)

EMAIL_DOMAINS: tuple[str, ...] = ("example.com", "example.org", "example.net")

CARD_BRANDS: tuple[str, ...] = ("visa", "mastercard", "amex", "discover")
CARD_BRAND_WEIGHTS: tuple[float, ...] = (45, 35, 12, 8)

CANCEL_REASONS: tuple[str, ...] = ("no longer needed", "ordered by mistake")
