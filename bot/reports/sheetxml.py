"""Streaming a large sheet's rows into a workbook openpyxl wrote.

openpyxl builds a cell object for every value it writes, even in write-only mode: a month of
100k tickets (two million cells) takes it twenty seconds and more on a small machine. So
the ledger's big sheet is written by openpyxl with its header and one template row (which
makes openpyxl register the date style), and its rows are then streamed as plain sheet XML
(inline strings, numbers, dates as Excel serials in that style) into a copy of the file, in
constant memory. Everything else in the workbook (styles, the other sheets, frozen panes,
column widths, the filter) stays as openpyxl wrote it."""

from __future__ import annotations

import functools
import re
import zipfile
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from xml.sax.saxutils import escape

from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.utils import get_column_letter

EXCEL_EPOCH = datetime(1899, 12, 30)  # day 0 of Excel's serial dates (after Feb 1900)
TEMPLATE_ROW = 2  # the row of the template sheet whose date cell gives the date style
BATCH = 500


def sheet_path(index: int) -> str:
    """Where openpyxl keeps the index-th sheet (1-based, in the order they were created)."""
    return f"xl/worksheets/sheet{index}.xml"


@functools.lru_cache(maxsize=4096)  # squads, categories, states repeat on every row
def _text(value: str) -> str:
    return escape(ILLEGAL_CHARACTERS_RE.sub("", value))


def _row(number: int, values: Sequence[object], letters: Sequence[str], date_style: str) -> str:
    cells = []
    for letter, value in zip(letters, values, strict=False):
        ref = f"{letter}{number}"
        if value is None:
            continue
        if isinstance(value, str):
            text = f'<t xml:space="preserve">{_text(value)}</t>'
            cells.append(f'<c r="{ref}" t="inlineStr"><is>{text}</is></c>')
        elif isinstance(value, datetime):
            serial = (value - EXCEL_EPOCH) / timedelta(days=1)
            cells.append(f'<c r="{ref}" s="{date_style}"><v>{serial}</v></c>')
        elif isinstance(value, bool):
            cells.append(f'<c r="{ref}" t="b"><v>{int(value)}</v></c>')
        else:
            cells.append(f'<c r="{ref}"><v>{value}</v></c>')
    return f'<row r="{number}">{"".join(cells)}</row>'


def fill_sheet(
    template: Path,
    target: Path,
    index: int,
    rows: Iterable[Sequence[object]],
    columns: int,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Copy `template` to `target`, with sheet `index` holding its header row and then
    `rows`; its filter is stretched over them. Returns how many rows were written."""
    name = sheet_path(index)
    letters = [get_column_letter(n) for n in range(1, columns + 1)]
    count = 0
    with (
        zipfile.ZipFile(template) as source,
        # light compression: most of the time of a large ledger would go to deflate
        zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as copy,
    ):
        for item in source.infolist():
            data = source.read(item)
            if item.filename != name:
                copy.writestr(item, data)
                continue
            head, rest = data.split(b"<sheetData>", 1)
            body, tail = rest.split(b"</sheetData>", 1)
            header = body[: body.index(b"</row>") + len(b"</row>")]
            found = re.search(rb'<row r="%d".*?\ss="(\d+)"' % TEMPLATE_ROW, body)
            if found is None:
                raise ValueError(f"{name}: the template row has no styled date cell")
            date_style = found.group(1).decode()
            # the sheet's extent is left for readers to find, as it is only known at the end
            head = re.sub(rb"<dimension [^>]*/>", b"", head)
            with copy.open(name, "w") as out:
                out.write(head + b"<sheetData>" + header)
                batch: list[str] = []
                for values in rows:
                    count += 1
                    batch.append(_row(count + 1, values, letters, date_style))
                    if len(batch) >= BATCH:
                        out.write("".join(batch).encode("utf-8"))
                        batch = []
                        if progress is not None:
                            progress(BATCH)
                out.write("".join(batch).encode("utf-8"))
                if progress is not None and batch:
                    progress(len(batch))
                last = f'<autoFilter ref="A1:{letters[-1]}{count + 1}"'.encode()
                tail = re.sub(rb'<autoFilter ref="[^"]*"', last, tail)
                out.write(b"</sheetData>" + tail)
    return count
