"""A font with Chinese glyphs for the charts. Matplotlib's own DejaVu Sans has none, and a
label drawn without them comes out as empty boxes, so the set-up installs one
(`scripts/system-packages`: fonts-wqy-microhei) and it is found here through
matplotlib.font_manager, first among the fonts matplotlib knows, then among the system's
font files (matplotlib caches its font list, so a font installed after that cache was
built is added by hand)."""

from __future__ import annotations

import functools
import re
from pathlib import Path

# Families with full Simplified Chinese coverage, best first.
FAMILIES = (
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "Sarasa Gothic SC",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
)
# The same fonts as their files are usually named.
FILES = re.compile(r"wqy|notosanscjk|notosanssc|sourcehansans|sarasa|msyh|simhei|pingfang")


class NoChineseFont(RuntimeError):
    pass


@functools.cache
def chinese_font() -> str:
    """The family name of an installed font with Chinese glyphs."""
    from matplotlib import font_manager

    known = {entry.name for entry in font_manager.fontManager.ttflist}
    for family in FAMILIES:
        if family in known:
            return family
    for path in sorted(font_manager.findSystemFonts()):
        if FILES.search(Path(path).name.lower().replace("-", "").replace("_", "")):
            font_manager.fontManager.addfont(path)
            name = font_manager.FontProperties(fname=path).get_name()
            if name:
                return str(name)
    raise NoChineseFont(
        "no font with Chinese glyphs is installed: run scripts/system-packages "
        "(it installs fonts-wqy-microhei)"
    )


@functools.cache
def use_chinese_font() -> str:
    """Tell matplotlib to draw every text with that font (once per process)."""
    import matplotlib

    family = chinese_font()
    matplotlib.rcParams["font.family"] = "sans-serif"
    matplotlib.rcParams["font.sans-serif"] = [family, "DejaVu Sans"]
    # the typographic minus (U+2212) is missing from some Chinese fonts: use a hyphen
    matplotlib.rcParams["axes.unicode_minus"] = False
    return family
