"""The fonts our PDFs print with: every script the pages show, read once per process.

DejaVu Sans, bundled in `portal/static/fonts`, prints Latin, Greek, Cyrillic, Arabic and
Hebrew (with the OpenType tables HarfBuzz needs to join Arabic letters). What it lacks
comes from fallback fonts that Debian packages install (`make fonts`, run by `make install`):
WenQuanYi Micro Hei (`fonts-wqy-microhei`) for Chinese, Japanese and Korean, and Symbola
(`fonts-symbola`) for emoji, in black and white. They are looked up by file name under the
directories of `PDF_FONT_DIRS` (separated by `os.pathsep`; default `/usr/share/fonts`).

A fallback font that is missing is reported once per process in the log, naming the package
to install; its characters are then left out and the rest of the text prints as usual.
The bundled fonts are always there: without them `FontMissing` is raised.

Parsing a font costs tens of milliseconds (a CJK font's, hundreds, and some 90 MB of a
worker's memory with Symbola), so each font is parsed once per process into a template,
and the fallback fonts only once a document holds a character DejaVu lacks
(`ensure_fallbacks`, called by the documents before they measure or draw text): a
process that only ever prints Latin, Greek, Cyrillic, Arabic or Hebrew never loads them,
and such documents take fpdf2's quicker path for text without fallback fonts. Each font
is parsed once; a document gets a copy that shares the read-only tables
(character map, widths, glyph order and metrics, the HarfBuzz font) and has its own subset.
fpdf2 subsets a font with fontTools when it writes the file, in place and parsing it whole;
so just before that (`FontOutputProducer`), HarfBuzz's subsetter, on a face prepared once
per process, cuts each font down to the glyphs the document drew, into a new `TTFont` of
the document's own that fontTools then parses and subsets quickly.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import threading
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import uharfbuzz as hb
from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import PDFResourceType
from fpdf.fonts import SubsetMap, TTFFont
from fpdf.output import OutputProducer

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).resolve().parent.parent / "static" / "fonts"
DEFAULT_FONT_DIRS = "/usr/share/fonts"
PRIMARY = "DejaVu"


class FontMissing(RuntimeError):
    """A font the PDFs cannot do without is not installed (the message says which)."""


@dataclass(frozen=True)
class FontFile:
    family: str
    style: str  # "" (regular) or "B" (bold), as fpdf2 names styles
    filename: str
    package: str | None = None  # the Debian package that installs it; None: bundled
    collection_index: int = 0  # the face within a .ttc collection


FONT_FILES: tuple[FontFile, ...] = (
    FontFile(PRIMARY, "", "DejaVuSans.ttf"),
    FontFile(PRIMARY, "B", "DejaVuSans-Bold.ttf"),
    FontFile("WenQuanYi", "", "wqy-microhei.ttc", "fonts-wqy-microhei"),
    FontFile("Symbola", "", "Symbola_hint.ttf", "fonts-symbola"),
)


@dataclass(frozen=True)
class _Template:
    font: TTFFont
    face: hb.Face  # HarfBuzz's face of the file, prepared for repeated subsetting


# Keep glyph names: fpdf2 finds the glyphs it drew by name. Layout tables go: fpdf2 drops
# them anyway, the text is already shaped.
_SUBSET_FLAGS = (
    hb.SubsetFlags.GLYPH_NAMES | hb.SubsetFlags.NOTDEF_OUTLINE | hb.SubsetFlags.NO_LAYOUT_CLOSURE
)


def font_dirs() -> tuple[Path, ...]:
    """Where fallback fonts are looked for: `PDF_FONT_DIRS`, or /usr/share/fonts."""
    value = os.environ.get("PDF_FONT_DIRS") or DEFAULT_FONT_DIRS
    return tuple(Path(part) for part in value.split(os.pathsep) if part.strip())


def install_fonts(pdf: FPDF) -> None:
    """Give `pdf` our bundled fonts (DejaVu); the fallbacks come with `ensure_fallbacks`.

    Raises `FontMissing` when a bundled font is not where the package put it.
    """
    pdf._portal_font_templates = {}  # type: ignore[attr-defined]  # for prepare_for_output
    pdf._portal_fallbacks = False  # type: ignore[attr-defined]
    _add_fonts(pdf, _templates(None))


def ensure_fallbacks(pdf: FPDF, text: str) -> None:
    """Before `text` is measured or drawn on `pdf` (given fonts by `install_fonts`): if it
    holds a character that DejaVu (regular or bold) lacks, add the fallback fonts (CJK,
    emoji; parsed once per process) to the document, as fallbacks of DejaVu. A no-op once
    they are there, and for text DejaVu covers."""
    if getattr(pdf, "_portal_fallbacks", True) or text.isascii():
        return
    covered = _primary_coverage()
    if all(char in covered or char < " " for char in text):
        return
    pdf._portal_fallbacks = True  # type: ignore[attr-defined]
    fallbacks: list[str] = []
    for spec in _add_fonts(pdf, _templates(font_dirs())):
        if spec.family not in fallbacks:
            fallbacks.append(spec.family)
    if fallbacks:
        pdf.set_fallback_fonts(fallbacks, exact_match=False)  # no bold CJK or emoji: regular


def _add_fonts(pdf: FPDF, templates: Iterator[tuple[FontFile, _Template]]) -> list[FontFile]:
    added = []
    for spec, template in templates:
        font = copy.copy(template.font)  # shares the template's TTFont, only read until output
        font.i = len(pdf.fonts) + 1
        font.subset = SubsetMap(font)
        font.missing_glyphs = []
        font.biggest_size_pt = 0
        pdf.fonts[font.fontkey] = font
        pdf._portal_font_templates[font.fontkey] = template  # type: ignore[attr-defined]
        added.append(spec)
    return added


@cache
def _primary_coverage() -> frozenset[str]:
    """The characters both DejaVu faces draw (each face's character map)."""
    maps = [set(map(chr, t.font.cmap)) for _spec, t in _templates(None)]
    return frozenset(set.intersection(*maps))


class FontOutputProducer(OutputProducer):
    """fpdf2's writer, after it leaves out the fonts no page uses (fpdf2 would embed every
    font added) and cuts the others down to the glyphs used: `pdf.output(output_producer_class=
    FontOutputProducer)` for a document given fonts by `install_fonts`."""

    def bufferize(self) -> bytearray:
        _prepare_for_output(self.fpdf)
        return super().bufferize()


def _prepare_for_output(pdf: FPDF) -> None:
    used = {
        int(str(font_id))  # fpdf2 records a font by its number
        for page in range(1, pdf.pages_count + 1)
        for font_id in pdf._resource_catalog.get_resources_per_page(page, PDFResourceType.FONT)
    }
    templates: dict[str, _Template] = getattr(pdf, "_portal_font_templates", {})
    for key, font in list(pdf.fonts.items()):
        if font.i not in used:
            del pdf.fonts[key]
        elif isinstance(font, TTFFont) and key in templates:
            font.ttfont = _glyphs_used(font, templates[key].face)


def _glyphs_used(font: TTFFont, face: hb.Face) -> TTFont:
    """The font cut down to the glyphs this document drew with it, under the names the
    whole font gives them (fpdf2 finds glyphs by name; a glyph the font leaves unnamed is
    named after its position, which the cut changes)."""
    wanted = hb.SubsetInput()
    wanted.flags = _SUBSET_FLAGS
    for glyph, _ in font.subset.items():
        if glyph is not None:
            wanted.glyph_set.add(glyph.glyph_id)
            wanted.unicode_set.update(glyph.unicode)
    plan = hb.SubsetPlan(face, wanted)
    cut = TTFont(io.BytesIO(plan.execute().blob.data), recalcTimestamp=False, lazy=True)
    whole = font.ttfont.getGlyphOrder()
    new_to_old = plan.new_to_old_glyph_mapping
    cut.setGlyphOrder([whole[new_to_old[new]] for new in range(len(new_to_old))])
    return cut


def needs_shaping(text: str) -> bool:
    """Whether `text` prints right only through HarfBuzz: right-to-left letters or digits
    (Arabic, Hebrew), combining marks (Indic and Thai vowels, decomposed accents), or a
    zero-width joiner (emoji sequences). Latin, Greek, Cyrillic and CJK print right without,
    and shaping every cell would make a long statement markedly slower."""
    return any(
        char > "\u02ff"
        and (
            unicodedata.bidirectional(char) in ("R", "AL", "AN")
            or unicodedata.category(char) in ("Mn", "Mc")
            or char == "\u200d"
        )
        for char in text
    )


def find_font(filename: str, dirs: Sequence[Path]) -> Path | None:
    """The first file named `filename` under `dirs` (searched in order, recursively)."""
    for directory in dirs:
        direct = directory / filename
        if direct.is_file():
            return direct
        for found in sorted(directory.rglob(filename)) if directory.is_dir() else ():
            if found.is_file():
                return found
    return None


_lock = threading.Lock()


def _templates(dirs: tuple[Path, ...] | None) -> Iterator[tuple[FontFile, _Template]]:
    """The bundled fonts (`dirs` None), or the fallback fonts found under `dirs`."""
    with _lock:  # parse each font once even when the first documents arrive together
        templates = _load_templates(dirs)
    yield from templates


@cache
def _load_templates(dirs: tuple[Path, ...] | None) -> tuple[tuple[FontFile, _Template], ...]:
    loader = FPDF()
    loaded = []
    for spec in FONT_FILES:
        bundled = spec.package is None
        if bundled != (dirs is None):
            continue
        path = BUNDLED_DIR / spec.filename if dirs is None else find_font(spec.filename, dirs)
        if path is None or not path.is_file():
            if spec.package is None:
                raise FontMissing(f"The bundled font {BUNDLED_DIR / spec.filename} is missing.")
            log.warning(
                "PDF font %s not found under %s: its characters will be left out "
                "(install the Debian package %s, e.g. with `make fonts`, or set PDF_FONT_DIRS)",
                spec.filename,
                os.pathsep.join(str(d) for d in dirs or ()),
                spec.package,
            )
            continue
        loader.add_font(spec.family, spec.style, path, collection_font_number=spec.collection_index)
        font = loader.fonts[f"{spec.family.lower()}{spec.style}"]
        if not isinstance(font, TTFFont):  # pragma: no cover - add_font makes only these
            raise TypeError(f"{path} did not load as a TrueType font")
        _ = font.hbfont  # made once here, then shared: shaping does not change it
        font.ttfont.getGlyphOrder()  # read now, once: shaping looks glyphs up by id
        font.ttfont["hmtx"]  # and by their advance widths
        data = path.read_bytes()
        face = hb.subset_preprocess(hb.Face(hb.Blob(data), spec.collection_index))
        loaded.append((spec, _Template(font, face)))
    return tuple(loaded)
