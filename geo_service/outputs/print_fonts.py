"""The CJK font for printed PDFs, with TrueType outlines.

Debian's Noto Sans CJK is a collection of CFF-outline OpenType fonts (``.ttc``).
matplotlib embeds a font for searchable text as Type 42 (``pdf.fonttype``
42) and writes it into the PDF's TrueType slot (``FontFile2``) whatever its
outlines are, so poppler warns "Mismatch between font type and embedded font
file" on every page and a strict print-shop preflight may reject the file
(matplotlib issue 20870, open). Type 3 is no way out: matplotlib draws every
character above 255 as a path there, so the Chinese would not be text.

So the Simplified Chinese face is converted once, with fontTools, into a
TrueType-outline font (cubic curves to quadratic, within 1 font unit) kept in
the user's cache directory. It holds the scripts a Chinese page prints
(Latin, punctuation, CJK ideographs and symbols, full-width forms); a rarer
character falls back to the original font, so it still prints.
"""

from __future__ import annotations

import os
from pathlib import Path

from fontTools import subset
from fontTools.pens.cu2quPen import Cu2QuPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTCollection, TTFont, newTable
from platformdirs import user_cache_dir

__all__ = ["PRINT_FAMILY", "truetype_font"]

#: The converted font's family name, distinct from the original's.
PRINT_FAMILY = "Noto Sans CJK SC Print"
#: Bumped when the conversion changes, so older cached files are not reused.
_VERSION = 1
#: What a Chinese page prints: Latin, general punctuation to dingbats, CJK
#: radicals, symbols and kana, the unified ideographs, compatibility
#: ideographs, vertical, small and full-width forms. (Extension A and beyond
#: fall back to the original font: converting them would double the wait.)
_RANGES = [
    (0x0020, 0x024F),
    (0x2000, 0x27BF),
    (0x2E80, 0x33FF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0xFE10, 0xFE6F),
    (0xFF00, 0xFFEF),
]


def _cache_dir() -> Path:
    return Path(user_cache_dir("geo-service", appauthor=False)) / "fonts"


def truetype_font(collection: str, weight: str) -> Path:
    """A TrueType-outline copy of the Simplified Chinese face of ``collection``
    (a Noto Sans CJK ``.ttc``), made on first use and cached by the source
    file's size and time."""
    stat = os.stat(collection)
    target = _cache_dir() / (
        f"NotoSansCJKsc-Print-{weight}-v{_VERSION}-{stat.st_size}-{int(stat.st_mtime)}.ttf"
    )
    if target.exists():
        return target
    font = _simplified_chinese(collection)
    _subset(font)
    _to_truetype(font)
    _rename(font, weight)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".{os.getpid()}.part")
    font.save(partial)
    partial.replace(target)  # atomic: a concurrent print never reads half a file
    return target


def _simplified_chinese(collection: str) -> TTFont:
    for number in range(len(TTCollection(collection, lazy=True).fonts)):
        font = TTFont(collection, fontNumber=number, lazy=True)
        if font["name"].getDebugName(1).endswith(" SC"):
            return TTFont(collection, fontNumber=number)
    raise ValueError(f"{collection} has no Simplified Chinese (SC) face")


def _subset(font: TTFont) -> None:
    options = subset.Options()
    # matplotlib lays text out glyph by glyph (no OpenType shaping), so the
    # layout tables and the glyphs only they reach are not needed.
    options.layout_features = []
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.glyph_names = True
    options.drop_tables += ["VORG", "vhea", "vmtx"]  # horizontal text only
    subsetter = subset.Subsetter(options)
    cmap = font.getBestCmap()
    subsetter.populate(
        unicodes=[code for low, high in _RANGES for code in range(low, high + 1) if code in cmap]
    )
    subsetter.subset(font)


def _to_truetype(font: TTFont) -> None:
    """CFF outlines to ``glyf`` (fontTools' otf2ttf recipe)."""
    order = font.getGlyphOrder()
    glyphs = font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder = order
    glyf.glyphs = {}
    for name in order:
        pen = TTGlyphPen(glyphs)
        glyphs[name].draw(Cu2QuPen(pen, 1.0, reverse_direction=True))
        glyf.glyphs[name] = pen.glyph()
    font["loca"] = newTable("loca")
    font["glyf"] = glyf
    del font["CFF "]
    hmtx = font["hmtx"]
    for name, glyph in glyf.glyphs.items():  # left side bearing is the outline's xMin
        glyph.recalcBounds(glyf)
        hmtx[name] = (hmtx[name][0], getattr(glyph, "xMin", 0))
    maxp = newTable("maxp")
    maxp.tableVersion = 0x00010000
    for field in (
        "maxZones",
        "maxTwilightPoints",
        "maxStorage",
        "maxFunctionDefs",
        "maxInstructionDefs",
        "maxStackElements",
        "maxSizeOfInstructions",
        "maxComponentElements",
    ):
        setattr(maxp, field, 1 if field == "maxZones" else 0)
    font["maxp"] = maxp  # its counts are computed on saving
    post = font["post"]
    post.formatType = 3.0  # no glyph names: CID fonts have none worth keeping
    font["head"].glyphDataFormat = 0
    font.sfntVersion = "\x00\x01\x00\x00"


def _rename(font: TTFont, weight: str) -> None:
    name = font["name"]
    postscript = f"NotoSansCJKsc-Print-{weight}"
    for record in list(name.names):
        if record.nameID in (1, 16):
            record.string = PRINT_FAMILY
        elif record.nameID in (4,):
            record.string = f"{PRINT_FAMILY} {weight}"
        elif record.nameID == 6:
            record.string = postscript
        elif record.nameID == 3:
            record.string = f"{postscript};{_VERSION}"
