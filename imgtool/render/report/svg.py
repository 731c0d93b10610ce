"""SVG pictures of the report, drawn from the view data of ``build.py``: memory maps, composition bars, heat maps.

Each picture is a string of SVG markup (``Markup``: safe to put in a template).  Sizes are in a 1000-wide
viewBox that scales with the page.  Colour is never the only cue: the kind of a VMA is also a letter and a
class, the state of its pages a fill pattern (solid, hatched, dotted, empty), defined once in ``defs()``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from markupsafe import Markup, escape

from imgtool.render.report.build import KIND_NAMES, KINDS, STATE_NAMES, VmaView

WIDTH = 1000
BAR = 34              # height of a VMA bar
ROW = BAR + 26        # a row of the memory map, with room for the address under it
TOP = 6               # room above the first row for a diff's change stripe
GAP = 16              # a compressed gap between two VMAs
LETTER = {"anon": "A", "file": "F", "shared": "S", "heap": "H", "stack": "K", "special": "V"}
SHORT = {**{v: k for k, v in KIND_NAMES.items()}, **{v: k for k, v in STATE_NAMES.items()},   # bar labels
         KIND_NAMES["special"]: "vdso", STATE_NAMES["present"]: "dumped", STATE_NAMES["untouched"]: "not dumped"}
STEPS = 8             # fill heights are rounded to eighths (neighbouring bins that round alike merge)
CHANGE_MARK = {"added": "+", "resized": "↔", "changed": "~"}   # a diff's mark on a mapping (with its stripe)


def defs() -> Markup:
    """The fill patterns every picture uses (one hidden SVG at the top of the page)."""
    return Markup(
        '<svg class="defs" width="0" height="0" aria-hidden="true" focusable="false"><defs>'
        '<pattern id="p-parent" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">'
        '<rect width="6" height="6" class="pat-bg"/><rect width="3" height="6" class="pat-ink"/></pattern>'
        '<pattern id="p-lazy" width="5" height="5" patternUnits="userSpaceOnUse">'
        '<rect width="5" height="5" class="pat-bg"/><circle cx="2.5" cy="2.5" r="1.3" class="pat-ink"/></pattern>'
        '<pattern id="p-gap" width="8" height="8" patternUnits="userSpaceOnUse">'
        '<path d="M0 8 L8 0" class="pat-line"/></pattern>'
        "</defs></svg>")


def _width(pages: int) -> float:
    return min(360.0, 18.0 + 12.0 * math.log2(max(1, pages)))


def _fmt_gap(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if nbytes < 1024 or unit == "TiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return ""


def memory_map(vmas: list[VmaView], pid: int) -> Markup:
    """Every VMA along the address space, in rows; gaps compressed and marked; pages shaded by state."""
    if not vmas:
        return Markup('<p class="muted">No memory mappings (a zombie or a task without mm).</p>')
    items: list[tuple[str, float, object]] = []
    prev_end = None
    for v in vmas:
        if prev_end is not None and v.start > prev_end:
            items.append(("gap", GAP, (prev_end, v.start)))
        items.append(("vma", _width(v.pages), v))
        prev_end = v.end
    rows: list[list[tuple[str, float, float, object]]] = [[]]
    x = 0.0
    for kind, w, obj in items:
        if x + w > WIDTH and rows[-1]:
            rows.append([])
            x = 0.0
        if kind == "gap" and not rows[-1]:
            kind, w = "gap-start", GAP      # a row starting with a gap: still marked
        rows[-1].append((kind, x, w, obj))
        x += w + 2
    height = TOP + len(rows) * ROW
    out = [f'<svg class="memmap" viewBox="0 0 {WIDTH} {height}" width="100%" role="group" '
           f'aria-label="memory map of pid {pid}, {len(vmas)} mappings" preserveAspectRatio="xMinYMin meet">']
    for r, row in enumerate(rows):
        y = TOP + r * ROW
        for kind, x, w, obj in row:
            if kind.startswith("gap"):
                lo, hi = obj
                out.append(f'<g class="gap"><title>gap {lo:#x}-{hi:#x} ({_fmt_gap(hi - lo)} unmapped, '
                           f'compressed)</title><rect x="{x:.1f}" y="{y + 4}" width="{w}" height="{BAR - 8}" '
                           f'fill="url(#p-gap)"/><path d="M{x + 4:.1f} {y} l4 6 l-4 6 l4 6 l-4 6 l4 6 l-4 4" '
                           f'class="gapmark"/></g>')
            else:
                out.append(_vma(obj, x, y, w))
    out.append("</svg>")
    return Markup("".join(out))


def _vma(v: VmaView, x: float, y: int, w: float) -> str:
    c = v.counts
    changed = f" ch-{v.change}" if v.change else ""
    attrs = (f'class="vma k-{v.kind}{changed}" tabindex="0" role="button" data-start="{v.start:#x}" '
             f'data-end="{v.end:#x}" data-change="{v.change}" data-change-text="{escape(v.change_text)}" '
             f'data-prot="{v.prot}{"s" if v.shared else "p"}" data-kind="{escape(KIND_NAMES[v.kind])}" '
             f'data-backing="{escape(v.backing)}" data-pages="{v.pages}" data-present="{c["present"]}" '
             f'data-parent="{c["parent"]}" data-lazy="{c["lazy"]}" data-untouched="{c["untouched"]}" '
             f'aria-label="{escape(v.tooltip.replace(chr(10), "; "))}"')
    parts = [f"<g {attrs}><title>{escape(v.tooltip)}</title>",
             f'<rect class="base" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR}"/>']
    # runs of bins whose rounded fills are equal: one rect per state per run
    pages = max(1, v.pages)
    bx = x
    runs: list[tuple[float, float, tuple[int, int, int]]] = []
    for counts, n in zip(v.bins, v.bin_pages, strict=True):
        bw = w * n / pages
        fill = _steps([counts.get(s, 0) for s in ("present", "parent", "lazy")], n)
        if runs and runs[-1][2] == fill:
            runs[-1] = (runs[-1][0], runs[-1][1] + bw, fill)
        else:
            runs.append((bx, bw, fill))
        bx += bw
    for rx, rw, fill in runs:
        top = y + BAR
        for state, steps in zip(("present", "parent", "lazy"), fill, strict=True):
            if steps:
                h = BAR * min(steps, STEPS) / STEPS
                top -= h
                parts.append(f'<rect class="s-{state}" x="{rx:.1f}" y="{top:.1f}" width="{rw:.1f}" height="{h:.1f}"/>')
    parts.append(f'<rect class="edge" x="{x:.1f}" y="{y}" width="{w:.1f}" height="{BAR}"/>')
    if v.change:
        parts.append(f'<rect class="chbar" x="{x:.1f}" y="{y - 5}" width="{w:.1f}" height="5"/>')
        if w >= 30:
            parts.append(f'<text class="chmark" x="{x + w - 3:.1f}" y="{y + 13}">{CHANGE_MARK[v.change]}</text>')
    if w >= 16:
        parts.append(f'<text class="letter" x="{x + 3:.1f}" y="{y + 13}">{LETTER[v.kind]}</text>')
    if w >= 90:
        parts.append(f'<text class="addr" x="{x:.1f}" y="{y + BAR + 13}">{v.start:x}</text>')
    parts.append("</g>")
    return "".join(parts)


def _steps(counts: list[int], pages: int) -> tuple[int, ...]:
    """Fill heights in eighths of the bar: any page at all shows (one eighth at least), never more than the bar."""
    steps = [max(1, round(STEPS * c / max(1, pages))) if c else 0 for c in counts]
    while sum(steps) > STEPS:
        steps[steps.index(max(steps))] -= 1
    return tuple(steps)


HEAT_LEVELS = (0.05, 0.2, 0.5, 0.9)     # shares of changed pages where the heat map gets darker


def _bar(segments: Iterable[tuple[str, str, int]], total: int, y: int, label: str) -> list[str]:
    out = [f'<text class="barlabel" x="0" y="{y + 17}">{escape(label)}</text>']
    x = 130.0
    span = WIDTH - 130
    for cls, name, n in segments:
        if not n:
            continue
        w = span * n / max(1, total)
        pct = 100 * n / max(1, total)
        out.append(f'<g class="seg"><title>{escape(name)}: {n} pages ({pct:.1f}%)</title>'
                   f'<rect class="{cls}" x="{x:.1f}" y="{y}" width="{w:.1f}" height="24"/>')
        if w > 70:
            out.append(f'<text class="seglabel" x="{x + 4:.1f}" y="{y + 16}">{escape(SHORT.get(name, name))} '
                       f'{pct:.0f}%</text>')
        out.append("</g>")
        x += w
    return out


def composition(comp: dict[str, dict[str, int]], pid: int | str) -> Markup:
    """Two bars: the mapped pages by kind, and by where the pages are (of one task, or of all)."""
    total = sum(c.get("pages", 0) for c in comp.values())
    if not total:
        return Markup("")
    by_state = {s: sum(c.get(s, 0) for c in comp.values()) for s in STATE_NAMES}
    out = [f'<svg class="comp" viewBox="0 0 {WIDTH} 64" width="100%" role="img" '
           f'aria-label="memory composition of {"pid " if isinstance(pid, int) else ""}{pid}">']
    out += _bar(((f"k-{k} kindfill", KIND_NAMES[k], comp.get(k, {}).get("pages", 0)) for k in KINDS), total, 2,
                "by kind")
    out += _bar(((f"st-{s}", STATE_NAMES[s], by_state[s]) for s in STATE_NAMES), total, 36, "by state")
    out.append("</svg>")
    return Markup("".join(out))


def heat_strip(bins: list[float]) -> Markup:
    """One row of a heat map: the share of changed pages in each bin of a VMA."""
    if not bins:
        return Markup("")
    n = len(bins)
    w = WIDTH / n
    out = [f'<svg class="heat" viewBox="0 0 {WIDTH} 20" width="100%" preserveAspectRatio="none" '
           f'role="img" '
           f'aria-label="changed pages along the mapping">']
    runs: list[list] = []     # [first bin, bins, level, most changed]: neighbours of one level are one rect
    for i, f in enumerate(bins):
        level = 0 if f <= 0 else 1 + sum(f >= t for t in HEAT_LEVELS)
        if runs and runs[-1][2] == level:
            runs[-1][1] += 1
            runs[-1][3] = max(runs[-1][3], f)
        else:
            runs.append([i, 1, level, f])
    for first, count, level, most in runs:
        if level:
            out.append(f'<rect class="h{level}" x="{first * w:.2f}" y="0" width="{count * w:.2f}" height="20">'
                       f"<title>{100 * most:.0f}% of the pages here changed</title></rect>")
    out.append(f'<rect class="edge" x="0" y="0" width="{WIDTH}" height="20"/></svg>')
    return Markup("".join(out))
