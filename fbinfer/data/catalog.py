"""The synthetic catalogue's vocabulary: categories, attributes and the words that name them.

Every product is (sub-category, colour, pattern, category attributes). Products of one
sub-category differ only by those attributes, as FashionBERT's fine-grained argument needs.
"""
from __future__ import annotations

COLORS: dict[str, tuple[tuple[int, int, int], list[str]]] = {
    "red": ((200, 30, 40), ["red", "scarlet red"]),
    "blue": ((40, 90, 210), ["blue", "royal blue"]),
    "navy": ((25, 35, 90), ["navy", "navy blue"]),
    "green": ((40, 150, 60), ["green", "grass green"]),
    "yellow": ((240, 210, 40), ["yellow", "mustard yellow"]),
    "orange": ((240, 130, 30), ["orange"]),
    "pink": ((240, 140, 180), ["pink", "rose pink"]),
    "purple": ((120, 50, 160), ["purple", "violet"]),
    "brown": ((120, 75, 40), ["brown", "chocolate brown"]),
    "black": ((25, 25, 25), ["black", "jet black"]),
    "white": ((245, 245, 245), ["white", "off-white"]),
    "grey": ((130, 130, 130), ["grey", "gray", "heather grey"]),
}

PATTERNS: dict[str, list[str]] = {
    "solid": ["solid", "plain", "solid-colour"],
    "striped": ["striped", "with stripes", "stripe"],
    "checked": ["checked", "plaid", "with a check pattern"],
    "dotted": ["polka-dot", "dotted", "with polka dots"],
    "floral": ["floral", "flower-print", "with a floral print"],
    "zigzag": ["zigzag", "chevron", "with a zigzag pattern"],
}

# attribute -> value -> phrases. A phrase starting with "with " goes after the noun.
ATTRIBUTES: dict[str, dict[str, list[str]]] = {
    "sleeve": {
        "sleeveless": ["sleeveless", "with no sleeves"],
        "short": ["short-sleeved", "short sleeve", "with short sleeves"],
        "long": ["long-sleeved", "long sleeve", "with long sleeves"],
    },
    "neckline": {
        "crew": ["crew-neck", "round-neck", "with a crew neck"],
        "v-neck": ["v-neck", "with a v neckline"],
        "collar": ["collared", "with a pointed collar"],
    },
    "hem": {"plain": ["clean-hem", "with a plain hem"], "ribbed": ["rib-knit", "with ribbed trims"]},
    "fit": {"regular": ["classic", "straight-cut"], "oversized": ["oversized", "boxy"]},
    "length": {
        "mini": ["mini", "short-length"],
        "midi": ["midi", "mid-length"],
        "maxi": ["maxi", "floor-length"],
    },
    "leg": {"slim": ["slim", "skinny", "slim-fit"], "wide": ["wide-leg", "loose", "palazzo"]},
    "pant_length": {
        "shorts": ["short", "above-the-knee", "bermuda"],
        "cropped": ["cropped", "ankle-length"],
        "full": ["full-length", "long"],
    },
    "coat_length": {
        "cropped": ["cropped", "waist-length"],
        "hip": ["hip-length", "regular-length"],
        "knee": ["knee-length", "longline"],
    },
    "heel": {"flat": ["flat", "flat-soled"], "mid": ["mid-heel", "block-heel"], "high": ["high-heel", "stiletto"]},
    "size": {"small": ["small", "compact"], "large": ["large", "roomy"]},
    "strap": {"short": ["with top handles", "with short handles"], "long": ["with a long strap", "with a shoulder strap"]},
}

# category -> (attributes, {sub-category: noun synonyms})
CATEGORIES: dict[str, tuple[list[str], dict[str, list[str]]]] = {
    "TOPS": (["sleeve", "neckline"], {"t-shirt": ["t-shirt", "tee"], "polo": ["polo shirt", "polo"], "peplum": ["peplum top", "peplum blouse"]}),
    "SWEATERS": (["hem", "fit"], {"pullover": ["pullover", "jumper", "sweater"], "cardigan": ["cardigan", "button cardigan"], "hoodie": ["hoodie", "hooded sweatshirt"]}),
    "DRESSES": (["length", "sleeve"], {"shift": ["shift dress", "straight dress"], "a-line dress": ["a-line dress", "flared dress"], "wrap": ["wrap dress", "belted dress"]}),
    "SKIRTS": (["length"], {"pencil": ["pencil skirt", "fitted skirt"], "a-line skirt": ["a-line skirt", "skater skirt"], "pleated": ["pleated skirt", "accordion skirt"]}),
    "PANTS": (["pant_length", "leg"], {"trousers": ["trousers", "tailored pants"], "jeans": ["jeans", "denim pants"], "joggers": ["joggers", "track pants"]}),
    "JACKETS & COATS": (["coat_length"], {"blazer": ["blazer", "suit jacket"], "bomber": ["bomber jacket", "bomber"], "trench": ["trench coat", "trench"]}),
    "SHOES": (["heel"], {"sneakers": ["sneakers", "trainers"], "boots": ["boots", "leather boots"], "pumps": ["pumps", "court shoes"]}),
    "BAGS": (["size", "strap"], {"tote": ["tote bag", "shopper bag"], "backpack": ["backpack", "rucksack"], "clutch": ["clutch", "envelope bag"]}),
}

DISTRACTORS = [
    "Made in Italy.", "Machine wash cold.", "Tonal stitching throughout.", "A wardrobe essential.",
    "Perfect for everyday wear.", "Imported.", "Part of the new season collection.", "Supplier colour code on label.",
    "Designed in Paris.", "Pairs well with denim.", "Signature logo patch.", "Dry clean only.",
    "Crafted from soft organic fabric.", "Model is wearing size small.", "Limited edition.",
]

BRANDS = ["Maison Arlo", "Nordvik", "Ostara", "Kenji & Co", "Lune Studio", "Bellwether", "Atelier Sora", "Fenwick"]
