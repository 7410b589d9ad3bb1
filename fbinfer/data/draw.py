"""Procedural product images: a garment silhouette per sub-category, shaped by its attributes,
filled with a colour and pattern, then placed, scaled and noised like a product photo."""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

Point = tuple[float, float]
Shape = tuple[str, list[Point]]  # (role, polygon in unit coordinates); role: body | detail | trim | cut


def _mirror(poly: list[Point]) -> list[Point]:
    return [(1.0 - x, y) for x, y in poly]


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[Point]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _sleeves(kind: str, top: float = 0.2) -> list[Shape]:
    if kind == "sleeveless":
        return []
    arm = {"short": [(0.31, top), (0.15, top + 0.18), (0.22, top + 0.25), (0.32, top + 0.14)],
           "long": [(0.31, top), (0.1, top + 0.55), (0.18, top + 0.58), (0.32, top + 0.17)]}[kind]
    return [("body", arm), ("body", _mirror(arm))]


def _neck(kind: str, top: float = 0.2) -> list[Shape]:
    if kind == "crew":
        return [("cut", [(0.42, top), (0.58, top), (0.55, top + 0.05), (0.5, top + 0.06), (0.45, top + 0.05)])]
    if kind == "v-neck":
        return [("cut", [(0.42, top), (0.58, top), (0.5, top + 0.14)])]
    if kind == "turtle":
        return [("body", _rect(0.42, top - 0.06, 0.58, top + 0.01))]
    flap = [(0.42, top - 0.01), (0.5, top + 0.07), (0.38, top + 0.08)]  # collar
    return [("cut", [(0.44, top), (0.56, top), (0.5, top + 0.05)]), ("trim", flap), ("trim", _mirror(flap))]


def _ribs(y0: float, y1: float, x0: float, x1: float) -> list[Shape]:
    return [("detail", _rect(x0 + i * (x1 - x0) / 12, y0, x0 + i * (x1 - x0) / 12 + 0.006, y1)) for i in range(1, 12)]


def _top(sub: str, a: dict[str, str]) -> list[Shape]:
    hem_w = 0.22 if sub == "peplum" else 0.28
    shapes: list[Shape] = [("body", [(0.31, 0.2), (0.69, 0.2), (0.7, 0.6), (1 - hem_w, 0.82), (hem_w, 0.82), (0.3, 0.6)])]
    shapes += _sleeves(a["sleeve"]) + _neck(a["neckline"])
    if sub == "polo":
        shapes += [("detail", _rect(0.49, 0.24, 0.51, 0.36))] + [("trim", _rect(0.485, y, 0.515, y + 0.02)) for y in (0.27, 0.32)]
    if sub == "peplum":
        shapes.append(("detail", _rect(0.3, 0.6, 0.7, 0.615)))
    return shapes


def _sweater(sub: str, a: dict[str, str]) -> list[Shape]:
    w = 0.06 if a["fit"] == "oversized" else 0.0
    shapes: list[Shape] = [("body", [(0.31 - w, 0.2), (0.69 + w, 0.2), (0.7 + w, 0.84), (0.3 - w, 0.84)])]
    shapes += _sleeves("long")
    if a["hem"] == "ribbed":
        shapes += _ribs(0.78, 0.84, 0.3 - w, 0.7 + w)
    if sub == "pullover":
        shapes += _neck("turtle")
    elif sub == "cardigan":
        shapes += _neck("v-neck") + [("detail", _rect(0.495, 0.34, 0.505, 0.84))]
        shapes += [("trim", _rect(0.48, y, 0.52, y + 0.025)) for y in (0.42, 0.55, 0.68)]
    else:  # hoodie: hood behind the neck and a front pocket
        shapes += [("trim", [(0.38, 0.2), (0.42, 0.08), (0.58, 0.08), (0.62, 0.2)]), ("detail", _rect(0.38, 0.58, 0.62, 0.72))]
    return shapes


def _dress(sub: str, a: dict[str, str]) -> list[Shape]:
    hem = {"mini": 0.6, "midi": 0.76, "maxi": 0.93}[a["length"]]
    flare = {"shift": 0.05, "a-line dress": 0.2, "wrap": 0.14}[sub]
    shapes: list[Shape] = [("body", [(0.36, 0.18), (0.64, 0.18), (0.62, 0.42), (0.64 + flare, hem), (0.36 - flare, hem), (0.38, 0.42)])]
    shapes += _sleeves(a["sleeve"], 0.18) + _neck("v-neck" if sub == "wrap" else "crew", 0.18)
    if sub == "wrap":
        shapes += [("detail", [(0.58, 0.3), (0.6, 0.3), (0.42, hem), (0.4, hem)]), ("trim", _rect(0.37, 0.4, 0.63, 0.44))]
    return shapes


def _skirt(sub: str, a: dict[str, str]) -> list[Shape]:
    hem = {"mini": 0.45, "midi": 0.66, "maxi": 0.9}[a["length"]]
    flare = {"pencil": -0.02, "a-line skirt": 0.16, "pleated": 0.12}[sub]
    shapes: list[Shape] = [("trim", _rect(0.34, 0.12, 0.66, 0.17)), ("body", [(0.34, 0.17), (0.66, 0.17), (0.68 + flare, hem), (0.32 - flare, hem)])]
    if sub == "pleated":
        shapes += [("detail", [(0.34 + i * 0.032, 0.17), (0.343 + i * 0.032, 0.17), (0.32 - flare + i * (0.36 + 2 * flare) / 10 + 0.004, hem), (0.32 - flare + i * (0.36 + 2 * flare) / 10, hem)]) for i in range(1, 10)]
    if sub == "pencil":
        shapes.append(("detail", _rect(0.495, hem - 0.08, 0.505, hem)))
    return shapes


def _pants(sub: str, a: dict[str, str]) -> list[Shape]:
    hem = {"shorts": 0.42, "cropped": 0.72, "full": 0.92}[a["pant_length"]]
    w = 0.07 if a["leg"] == "wide" else 0.0
    taper = 0.03 if sub == "joggers" else 0.0
    leg = [(0.32, 0.16), (0.5, 0.16), (0.5, 0.3), (0.47 + taper, hem), (0.3 - w + taper, hem)]
    shapes: list[Shape] = [("trim", _rect(0.32, 0.11, 0.68, 0.16)), ("body", leg), ("body", _mirror(leg))]
    if sub == "jeans":
        shapes += [("detail", [(0.34, 0.16), (0.42, 0.16), (0.36, 0.24)]), ("detail", _mirror([(0.34, 0.16), (0.42, 0.16), (0.36, 0.24)]))]
    elif sub == "trousers":
        shapes += [("detail", _rect(0.395, 0.2, 0.4, hem)), ("detail", _rect(0.6, 0.2, 0.605, hem))]
    else:
        shapes += [("trim", _rect(0.3 - w + taper, hem - 0.04, 0.47 + taper, hem)), ("trim", _rect(0.53 - taper, hem - 0.04, 0.7 + w - taper, hem))]
        shapes += [("detail", _rect(0.47, 0.16, 0.48, 0.24)), ("detail", _rect(0.52, 0.16, 0.53, 0.24))]
    return shapes


def _coat(sub: str, a: dict[str, str]) -> list[Shape]:
    hem = {"cropped": 0.55, "hip": 0.72, "knee": 0.92}[a["coat_length"]]
    shapes: list[Shape] = [("body", [(0.3, 0.18), (0.7, 0.18), (0.72, hem), (0.28, hem)])] + _sleeves("long", 0.18)
    shapes.append(("detail", _rect(0.497, 0.26, 0.503, hem)))
    if sub == "blazer":
        lapel = [(0.42, 0.18), (0.5, 0.42), (0.38, 0.3)]
        shapes += [("trim", lapel), ("trim", _mirror(lapel)), ("detail", _rect(0.485, 0.45, 0.515, 0.47))]
    elif sub == "bomber":
        shapes += _ribs(hem - 0.05, hem, 0.28, 0.72) + [("trim", _rect(0.4, 0.14, 0.6, 0.2))]
    else:
        shapes += [("trim", _rect(0.28, 0.45, 0.72, 0.49))] + _neck("collar", 0.18)
        shapes += [("detail", _rect(x, y, x + 0.025, y + 0.025)) for x in (0.42, 0.56) for y in (0.26, 0.36)]
    return shapes


def _shoe(sub: str, a: dict[str, str]) -> list[Shape]:
    lift = {"flat": 0.0, "mid": 0.08, "high": 0.17}[a["heel"]]
    top = 0.3 if sub == "boots" else 0.5
    back = 0.62 - lift
    body = [(0.22, top), (0.4, top), (0.46, 0.62), (0.82, 0.66), (0.86, 0.74), (0.22, back + 0.12)]
    shapes: list[Shape] = [("body", body)]
    if lift:
        shapes.append(("trim", [(0.22, back + 0.12), (0.29, back + 0.14), (0.28, 0.76), (0.25, 0.76)]))
    if sub == "sneakers":
        shapes.append(("trim", [(0.22, back + 0.1), (0.86, 0.72), (0.86, 0.77), (0.22, back + 0.15)]))
        shapes += [("detail", _rect(0.45 + i * 0.05, 0.6 + i * 0.01, 0.47 + i * 0.05, 0.64 + i * 0.01)) for i in range(4)]
    elif sub == "pumps":
        shapes.append(("cut", [(0.3, top), (0.44, top), (0.52, 0.63), (0.32, 0.6)]))
    else:
        shapes.append(("detail", _rect(0.22, top, 0.4, top + 0.03)))
    return shapes


def _bag(sub: str, a: dict[str, str]) -> list[Shape]:
    s = 0.13 if a["size"] == "small" else 0.0
    x0, x1, y0, y1 = 0.22 + s, 0.78 - s, 0.42 + s * 0.6, 0.85 - s * 0.4
    strap_top = 0.08 if a["strap"] == "long" else 0.28 + s * 0.5
    body = _rect(x0, y0, x1, y1) if sub != "tote" else [(x0 + 0.04, y0), (x1 - 0.04, y0), (x1, y1), (x0, y1)]
    shapes: list[Shape] = [("trim", [(x0 + 0.1, y0), (0.5, strap_top), (x1 - 0.1, y0), (x1 - 0.13, y0), (0.5, strap_top + 0.03), (x0 + 0.13, y0)]), ("body", body)]
    if sub == "clutch":
        shapes.append(("detail", [(x0, y0), (x1, y0), (0.5, (y0 + y1) / 2)]))
    elif sub == "backpack":
        shapes.append(("detail", _rect(x0 + 0.08, (y0 + y1) / 2, x1 - 0.08, y1 - 0.04)))
    return shapes


DRAWERS = {"TOPS": _top, "SWEATERS": _sweater, "DRESSES": _dress, "SKIRTS": _skirt, "PANTS": _pants,
           "JACKETS & COATS": _coat, "SHOES": _shoe, "BAGS": _bag}


def _texture(size: int, rgb: tuple[int, int, int], pattern: str, rng: np.random.Generator) -> Image.Image:
    lum = 0.3 * rgb[0] + 0.59 * rgb[1] + 0.11 * rgb[2]
    ink = (20, 20, 20) if lum > 150 else (235, 235, 235)
    img = Image.new("RGB", (size, size), rgb)
    d = ImageDraw.Draw(img)
    step = int(rng.integers(12, 20))
    if pattern == "striped":
        for y in range(0, size, step):
            d.rectangle([0, y, size, y + step // 3], fill=ink)
    elif pattern == "checked":
        dark = tuple(int(c * 0.55) for c in rgb) if lum > 60 else (90, 90, 90)
        for y in range(0, size, step):
            for x in range(0, size, step):
                if (x // step + y // step) % 2:
                    d.rectangle([x, y, x + step - 1, y + step - 1], fill=dark)
        for y in range(0, size, step):
            d.line([0, y, size, y], fill=ink)
    elif pattern == "dotted":
        for y in range(step // 2, size, step):
            for x in range(step // 2 + (y // step % 2) * step // 2, size, step):
                d.ellipse([x - 3, y - 3, x + 3, y + 3], fill=ink)
    elif pattern == "floral":
        for y in range(step, size, 2 * step):
            for x in range(step + (y // (2 * step) % 2) * step, size, 2 * step):
                for dx, dy in ((0, -4), (4, 0), (0, 4), (-4, 0)):
                    d.ellipse([x + dx - 3, y + dy - 3, x + dx + 3, y + dy + 3], fill=ink)
                d.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(240, 200, 40))
    elif pattern == "zigzag":
        for y in range(0, size, step):
            pts = [(x, y + (step // 2 if (x // step) % 2 else 0)) for x in range(0, size + step, step)]
            d.line(pts, fill=ink, width=3)
    return img


def render(category: str, sub: str, attrs: dict[str, str], rgb: tuple[int, int, int], pattern: str,
           rng: np.random.Generator, size: int = 256) -> Image.Image:
    """One photo of the product: random placement, scale, tilt, background, lighting and noise."""
    shapes = DRAWERS[category](sub, attrs)
    scale = rng.uniform(0.72, 1.0) * size
    ox, oy = (size - scale) / 2 + rng.uniform(-0.08, 0.08) * size, (size - scale) / 2 + rng.uniform(-0.06, 0.06) * size
    tilt = np.deg2rad(rng.uniform(-8, 8))
    c, s = np.cos(tilt), np.sin(tilt)

    def place(poly: list[Point]) -> list[tuple[float, float]]:
        return [(ox + scale * (0.5 + (x - 0.5) * c - (y - 0.5) * s), oy + scale * (0.5 + (x - 0.5) * s + (y - 0.5) * c)) for x, y in poly]

    bg = tuple(int(v) for v in rng.integers(200, 256, size=3))
    img = Image.new("RGB", (size, size), bg)
    shade = rng.uniform(0.85, 1.1)
    lit = tuple(int(min(255, v * shade)) for v in rgb)
    texture = _texture(size, lit, pattern, rng)
    mask = Image.new("L", (size, size), 0)
    overlay = ImageDraw.Draw(img)
    for role, poly in shapes:
        pts = place(poly)
        if role == "body":
            ImageDraw.Draw(mask).polygon(pts, fill=255)
    img.paste(texture, (0, 0), mask)
    dark = tuple(int(v * 0.5) for v in lit)
    for role, poly in shapes:
        pts = place(poly)
        if role == "cut":
            overlay.polygon(pts, fill=bg)
        elif role == "detail":
            overlay.polygon(pts, fill=dark)
        elif role == "trim":
            overlay.polygon(pts, fill=lit, outline=dark)
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, rng.uniform(2, 8), size=(size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
