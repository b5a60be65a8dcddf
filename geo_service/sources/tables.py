"""Read the files town offices keep (CSV, XLSX, GeoJSON, GeoPackage, Shapefile)
into plain rows: ``{header: value}`` plus an optional point, with the line
number a person sees in the file.

What real spreadsheets do, and this handles: GBK/GB18030 CSV from old Excel
(detected with charset-normalizer), a UTF-8 byte-order mark, a title row or
two above the header, merged cells (the value is repeated over the merged
range), blank rows, numbers stored as numbers.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from charset_normalizer import from_bytes

from geo_service.errors import InvalidParameter

__all__ = ["CellError", "SourceRow", "SourceTable", "read_table"]

#: Files read as tables of rows; the rest through GDAL.
TABULAR = {".csv", ".txt", ".xlsx", ".xlsm"}
SPATIAL = {".geojson", ".json", ".gpkg", ".shp", ".zip"}


@dataclass(frozen=True)
class CellError:
    """A cell whose value cannot be trusted: an Excel error (#N/A) or a formula
    with no saved result. The import reports it; it never lands as data."""

    reason: str

    def __str__(self) -> str:
        return self.reason


@dataclass
class SourceRow:
    line: int  # as the user sees it: the spreadsheet row or CSV line number
    values: dict[str, Any]
    point: tuple[float, float] | None = None  # lon, lat from a spatial file's geometry
    geometry: Any = None  # any geometry from a spatial file (town polygons)


@dataclass
class SourceTable:
    name: str
    headers: list[str]
    rows: list[SourceRow]
    encoding: str | None = None  # for CSV: what was detected
    crs: str | None = None  # for spatial files: what the file declares
    notes: list[str] = field(default_factory=list)


def _decode(data: bytes, name: str) -> tuple[str, str]:
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    # Old Excel saves Chinese CSV as GBK; GB18030 is its superset, so decode with it.
    best = from_bytes(data, cp_isolation=["gb18030", "gbk", "big5", "utf_16"]).best()
    if best is None:
        raise InvalidParameter("file", f"{name}: cannot tell the text encoding")
    encoding = "gb18030" if best.encoding in {"gbk", "gb2312", "gb18030"} else best.encoding
    try:
        return data.decode(encoding), encoding
    except UnicodeDecodeError:
        raise InvalidParameter("file", f"{name}: not readable as {encoding}") from None


def _header_index(rows: list[list[Any]], known: set[str], normalise) -> int:
    """The first row that names at least two known columns (title rows sit above)."""
    for number, row in enumerate(rows[:20]):
        hits = sum(1 for cell in row if cell is not None and normalise(str(cell)) in known)
        if hits >= 2:
            return number
    raise InvalidParameter(
        "file", "no header row found: expected column names such as 名称, 地址, 经度, 纬度"
    )


def _unique_headers(raw: list[Any]) -> tuple[list[str], list[str]]:
    """Header names as written; a blank header over data becomes column_N and a
    repeated one gets _2, _3 (so no column silently replaces another)."""
    headers, notes, seen = [], [], {}
    for number, cell in enumerate(raw, start=1):
        name = str(cell).strip() if cell is not None else ""
        if not name:
            name = f"column_{number}"
        if name in seen:
            seen[name] += 1
            renamed = f"{name}_{seen[name]}"
            notes.append(f"column {number} repeats the header {name!r}: kept as {renamed!r}")
            name = renamed
        else:
            seen[name] = 1
        headers.append(name)
    return headers, notes


def _rows_from_grid(
    grid: list[list[Any]], known: set[str], normalise, lines: list[int] | None = None
) -> tuple[list[str], list[SourceRow], list[str]]:
    """``lines``: the line each grid row starts on (CSV cells may span lines)."""
    header_at = _header_index(grid, known, normalise)
    width = max(len(row) for row in grid[header_at:])
    raw_headers = list(grid[header_at]) + [None] * (width - len(grid[header_at]))
    headers, notes = _unique_headers(raw_headers)
    rows = []
    for offset, raw in enumerate(grid[header_at + 1 :], start=header_at + 1):
        cells = list(raw) + [None] * (width - len(raw))
        values = {
            header: (cell.strip() if isinstance(cell, str) else cell)
            for header, cell in zip(headers, cells, strict=True)
        }
        if all(v in (None, "") for v in values.values()):
            continue  # blank lines between blocks are not rows
        line = lines[offset] if lines else offset + 1
        rows.append(SourceRow(line=line, values=values))
    # Columns with no header and no data are only padding.
    used = [
        h
        for h in headers
        if not h.startswith("column_") or any(r.values.get(h) not in (None, "") for r in rows)
    ]
    for row in rows:
        row.values = {h: row.values[h] for h in used}
    if not rows:
        raise InvalidParameter("file", "the file has a header but no data rows")
    return used, rows, notes


def _read_csv(path: Path, known: set[str], normalise) -> SourceTable:
    text, encoding = _decode(path.read_bytes(), path.name)
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    grid, lines, line = [], [], 1
    try:
        for row in reader:
            grid.append(row)
            lines.append(line)
            line = reader.line_num + 1
    except csv.Error as error:
        raise InvalidParameter("file", f"{path.name}, line {reader.line_num}: {error}") from None
    headers, rows, notes = _rows_from_grid(grid, known, normalise, lines)
    return SourceTable(path.name, headers, rows, encoding=encoding, notes=notes)


def _read_xlsx(path: Path, known: set[str], normalise) -> SourceTable:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, data_only=True)
    except Exception as error:  # openpyxl raises many kinds for a bad file
        raise InvalidParameter(
            "file", f"{path.name} is not a readable XLSX file: {error}"
        ) from None
    sheet = book.worksheets[0]
    formulas = load_workbook(path, data_only=False).worksheets[0]
    grid = []
    for values_row, formula_row in zip(sheet.iter_rows(), formulas.iter_rows(), strict=False):
        row = []
        for cell, formula in zip(values_row, formula_row, strict=False):
            if cell.data_type == "e":
                row.append(CellError(f"Excel error {cell.value}"))
            elif formula.data_type == "f" and cell.value is None:
                row.append(CellError("a formula with no saved result (save it in Excel first)"))
            else:
                row.append(cell.value)
        grid.append(row)
    # A merged cell holds its value only in the top-left corner: spread it.
    for merged in sheet.merged_cells.ranges:
        value = grid[merged.min_row - 1][merged.min_col - 1]
        for r in range(merged.min_row - 1, merged.max_row):
            for c in range(merged.min_col - 1, merged.max_col):
                if r < len(grid) and c < len(grid[r]):
                    grid[r][c] = value
    headers, rows, header_notes = _rows_from_grid(grid, known, normalise)
    notes = [f"sheet {sheet.title!r}", *header_notes] + (
        [f"{len(book.worksheets) - 1} more sheets ignored"] if len(book.worksheets) > 1 else []
    )
    return SourceTable(path.name, headers, rows, notes=notes)


def _read_spatial(path: Path) -> SourceTable:
    import pyogrio

    try:
        frame = pyogrio.read_dataframe(path)
    except Exception as error:  # GDAL's errors for unreadable files vary by driver
        raise InvalidParameter(
            "file", f"{path.name} is not a readable spatial file: {error}"
        ) from None
    crs = frame.crs.to_string() if frame.crs is not None else None
    if frame.crs is not None and not frame.crs.equals("EPSG:4326"):
        if frame.crs.to_epsg() == 4490:  # CGCS2000 and WGS-84 agree to a few cm
            frame = frame.set_crs(4326, allow_override=True)
        else:
            frame = frame.to_crs(4326)
    headers = [c for c in frame.columns if c != "geometry"]
    rows = []
    for number, (values, geometry) in enumerate(
        zip(frame[headers].to_dict("records"), frame.geometry, strict=True), start=1
    ):
        point = None
        if geometry is not None and not geometry.is_empty and geometry.geom_type == "Point":
            point = (geometry.x, geometry.y)
        clean = {k: (None if _is_missing(v) else v) for k, v in values.items()}
        rows.append(SourceRow(line=number, values=clean, point=point, geometry=geometry))
    return SourceTable(path.name, headers, rows, crs=crs)


def _is_missing(value: Any) -> bool:
    try:
        return value is None or value != value  # NaN
    except (TypeError, ValueError):
        return False


def read_table(path: Path, known: set[str], normalise) -> SourceTable:
    """Read ``path`` by its extension. ``known`` are the normalised header
    names the import understands, used to find the header row."""
    if not path.exists():
        raise InvalidParameter("file", f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in {".csv", ".txt"}:
        return _read_csv(path, known, normalise)
    if suffix in {".xlsx", ".xlsm"}:
        return _read_xlsx(path, known, normalise)
    if suffix in SPATIAL:
        return _read_spatial(path)
    raise InvalidParameter(
        "file",
        f"{path.name}: unsupported file type {suffix!r}; use CSV, XLSX, GeoJSON, "
        "GeoPackage or Shapefile",
    )
