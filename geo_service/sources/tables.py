"""Read the files town offices keep (CSV, XLSX, GeoJSON, GeoPackage, Shapefile)
into plain rows: ``{header: value}`` plus an optional point, with the line
number a person sees in the file.

What real spreadsheets do, and this handles: GBK/GB18030 CSV from old Excel
(detected with charset-normalizer), a UTF-8 byte-order mark, a title row or
two above the header, merged cells (the value is repeated over the merged
range), blank rows, numbers stored as numbers.

What hostile files do, and this refuses: every file is read as a stream and
checked against ``ImportLimits`` as it is read, so a file over a limit costs
no more than the limit. XLSX files are checked for unpacked size, declared
dimension and merged ranges before any cell is expanded; GeoPackage layers
must be tables (a view can produce endless rows from a few bytes).
"""

from __future__ import annotations

import codecs
import csv
import re
import sqlite3
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote
from xml.parsers import expat

from charset_normalizer import from_bytes

from geo_service.errors import ImportTooLarge, InvalidParameter

__all__ = [
    "DEFAULT_LIMITS",
    "CellError",
    "ImportLimits",
    "SourceRow",
    "SourceTable",
    "read_table",
]

#: Files read as tables of rows; the rest through GDAL.
TABULAR = {".csv", ".txt", ".xlsx", ".xlsm"}
SPATIAL = {".geojson", ".json", ".gpkg", ".shp", ".zip"}

#: The header row is looked for among this many rows at the top of a file.
HEADER_SEARCH_ROWS = 20
#: Excel's own limit: a row with more cells than this was not made by Excel.
EXCEL_MAX_COLUMNS = 16_384
#: Elements of a sheet outside its cells (column widths, merged ranges, links,
#: validations): an office file has hundreds.
SHEET_OTHER_ELEMENTS = 100_000
#: Bytes charset-normalizer looks at to tell GBK from Big5 and the like.
ENCODING_SAMPLE_BYTES = 4_000_000
#: Members of a zipped Shapefile (and the notes that travel with one).
SHAPEFILE_PARTS = {
    ".shp", ".shx", ".dbf", ".prj", ".cpg", ".qix", ".sbn", ".sbx", ".fbn", ".fbx",
    ".ain", ".aih", ".atx", ".ixs", ".mxs", ".xml", ".qmd", ".qml", ".sld", ".lyr",
    ".lyrx", ".txt", ".md", ".pdf", ".doc", ".docx",
}  # fmt: skip


@dataclass(frozen=True)
class ImportLimits:
    """How much of a file an import reads before refusing it.

    Each limit is checked while the file is read, so refusing a file over a
    limit costs no more than reading up to that limit.

    Parameters
    ----------
    max_rows
        Data rows (or features) in a file.
    max_columns
        Columns with data in a row (trailing empty cells do not count).
    max_cell_chars
        Characters in one cell.
    max_cells
        Rows times columns in all; also bounds an XLSX sheet's declared
        dimension and each of its merged ranges.
    max_unpacked_bytes
        Bytes of an XLSX file's XML once unzipped (a zip bomb guard), of a
        zipped Shapefile once unzipped, and of a GeoJSON or GeoPackage file.

    Example
    -------
    >>> ImportLimits(max_rows=100).max_lines  # blank rows included
    220
    """

    max_rows: int = 50_000
    max_columns: int = 200
    max_cell_chars: int = 10_000
    max_cells: int = 2_000_000
    max_unpacked_bytes: int = 100_000_000

    @property
    def max_lines(self) -> int:
        """Rows read in all, blank ones and the rows above the header included."""
        return 2 * self.max_rows + HEADER_SEARCH_ROWS


#: The limits when none are given (ImportLimits is frozen, so one is shared).
DEFAULT_LIMITS = ImportLimits()


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


# -- refusals ------------------------------------------------------------------------
# Chinese first: town staff read these; the English half is for the log and
# for systems. Each says what to do about it.


def _too_many_rows(name: str, limits: ImportLimits) -> ImportTooLarge:
    return ImportTooLarge(
        f"{name}：文件超过 {limits.max_rows} 行的上限，请拆分成几个文件分批导入 "
        f"(the file has more than {limits.max_rows:,} rows; split it into several files)"
    )


def _too_many_lines(name: str, limits: ImportLimits) -> ImportTooLarge:
    return ImportTooLarge(
        f"{name}：文件超过 {limits.max_lines} 行（含空行）的上限，请删去空行或拆分文件 "
        f"(the file has more than {limits.max_lines:,} rows counting blank ones; "
        "delete the blank rows or split the file)"
    )


def _too_many_columns(name: str, line: int, limits: ImportLimits) -> ImportTooLarge:
    return ImportTooLarge(
        f"{name}：第 {line} 行超过 {limits.max_columns} 列的上限，请删去多余的列 "
        f"(line {line} has more than {limits.max_columns:,} columns; delete the extra columns)"
    )


def _too_long_cell(
    name: str, line: int, column: str | None, limits: ImportLimits
) -> ImportTooLarge:
    # CSV columns go by number (第 3 列), XLSX by letter (C 列), others by name.
    zh = (f"第 {column} 列" if column.isdigit() else f" {column} 列") if column else ""
    en = f", column {column}" if column else ""
    return ImportTooLarge(
        f"{name}：第 {line} 行{zh}的内容超过 {limits.max_cell_chars} 个字符的上限，请缩短 "
        f"(line {line}{en}: a cell longer than {limits.max_cell_chars:,} characters; "
        "shorten it)"
    )


def _too_many_cells(name: str, limits: ImportLimits) -> ImportTooLarge:
    return ImportTooLarge(
        f"{name}：文件超过 {limits.max_cells} 个单元格的上限，请拆分成几个文件分批导入 "
        f"(the file has more than {limits.max_cells:,} cells; split it into several files)"
    )


def _too_large_unpacked(name: str, limits: ImportLimits) -> ImportTooLarge:
    megabytes = limits.max_unpacked_bytes // 1_000_000
    return ImportTooLarge(
        f"{name}：文件解压后超过 {megabytes} MB 的上限，请拆分成几个文件 "
        f"(the file unpacks to more than {megabytes:,} MB; split it into several files)"
    )


def _unreadable(name: str, what: str, why: str) -> InvalidParameter:
    return InvalidParameter("file", f"{name} is not a readable {what} file: {why}")


# -- rows, as they are read ----------------------------------------------------------


def _blank(value: Any) -> bool:
    return value is None or value == ""


class _Grid:
    """Rows collected as they are read; the first limit a row passes refuses
    the file, so no more of it is read."""

    def __init__(self, name: str, limits: ImportLimits):
        self.name = name
        self.limits = limits
        self.rows: list[list[Any]] = []
        self.lines: list[int] = []
        self.width = 0
        self.filled = 0  # rows with any data

    def add(self, line: int, cells: list[Any], label=str) -> None:
        """``label``: how a person names a column by its 1-based number."""
        limits = self.limits
        end = len(cells)
        while end and _blank(cells[end - 1]):
            end -= 1  # trailing empty cells are only padding
        if end > limits.max_columns:
            raise _too_many_columns(self.name, line, limits)
        for number in range(end):
            value = cells[number]
            if isinstance(value, str) and len(value) > limits.max_cell_chars:
                raise _too_long_cell(self.name, line, label(number + 1), limits)
        self.rows.append(cells[:end] if end < len(cells) else cells)
        self.lines.append(line)
        if len(self.rows) > limits.max_lines:
            raise _too_many_lines(self.name, limits)
        if end:
            self.filled += 1
            if self.filled > limits.max_rows + HEADER_SEARCH_ROWS:
                raise _too_many_rows(self.name, limits)
            self.width = max(self.width, end)
            if self.filled * self.width > limits.max_cells:
                raise _too_many_cells(self.name, limits)


def _header_index(rows: list[list[Any]], known: set[str], normalise) -> int:
    """The first row that names at least two known columns (title rows sit above)."""
    for number, row in enumerate(rows[:HEADER_SEARCH_ROWS]):
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
    grid: _Grid, known: set[str], normalise
) -> tuple[list[str], list[SourceRow], list[str]]:
    header_at = _header_index(grid.rows, known, normalise)
    width = max(len(row) for row in grid.rows[header_at:])
    raw_headers = list(grid.rows[header_at]) + [None] * (width - len(grid.rows[header_at]))
    headers, notes = _unique_headers(raw_headers)
    rows = []
    for offset, raw in enumerate(grid.rows[header_at + 1 :], start=header_at + 1):
        if not any(not _blank(cell) for cell in raw):
            continue  # blank lines between blocks are not rows
        cells = list(raw) + [None] * (width - len(raw))
        values = {
            header: (cell.strip() if isinstance(cell, str) else cell)
            for header, cell in zip(headers, cells, strict=True)
        }
        if all(v in (None, "") for v in values.values()):
            continue
        rows.append(SourceRow(line=grid.lines[offset], values=values))
        if len(rows) > grid.limits.max_rows:
            raise _too_many_rows(grid.name, grid.limits)
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


# -- CSV -----------------------------------------------------------------------------


def _is_utf8(path: Path) -> bool:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def _encoding(path: Path, name: str) -> str:
    with path.open("rb") as stream:
        head = stream.read(ENCODING_SAMPLE_BYTES)
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if _is_utf8(path):
        return "utf-8"
    # Old Excel saves Chinese CSV as GBK; GB18030 is its superset, so decode with it.
    best = from_bytes(head, cp_isolation=["gb18030", "gbk", "big5", "utf_16"]).best()
    if best is None:
        raise InvalidParameter("file", f"{name}: cannot tell the text encoding")
    return "gb18030" if best.encoding in {"gbk", "gb2312", "gb18030"} else best.encoding


def _bounded_lines(stream: TextIO, name: str, limits: ImportLimits) -> Iterator[str]:
    """The file's lines, refusing one longer than a full row could be (so a
    line of a million commas is never split into a million cells)."""
    longest = limits.max_columns * (2 * limits.max_cell_chars + 3)
    for number in range(1, limits.max_lines * 4):
        line = stream.readline(longest + 1)
        if not line:
            return
        if len(line) > longest:
            raise ImportTooLarge(
                f"{name}：第 {number} 行超过 {longest} 个字符，不像是表格文件 "
                f"(line {number} is longer than {longest:,} characters; not a table)"
            )
        yield line
    raise _too_many_lines(name, limits)


def _read_csv(path: Path, known: set[str], normalise, limits: ImportLimits) -> SourceTable:
    encoding = _encoding(path, path.name)
    grid = _Grid(path.name, limits)
    with path.open(encoding=encoding, newline="") as stream:
        try:
            sample = stream.read(4096)
            stream.seek(0)
        except UnicodeDecodeError:
            raise InvalidParameter("file", f"{path.name}: not readable as {encoding}") from None
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        reader = csv.reader(_bounded_lines(stream, path.name, limits), dialect)
        line = 1
        try:
            for row in reader:
                grid.add(line, row)
                line = reader.line_num + 1
        except UnicodeDecodeError:
            raise InvalidParameter("file", f"{path.name}: not readable as {encoding}") from None
        except csv.Error as error:
            if "field larger than field limit" in str(error):
                raise _too_long_cell(path.name, reader.line_num, None, limits) from None
            raise InvalidParameter(
                "file", f"{path.name}, line {reader.line_num}: {error}"
            ) from None
    headers, rows, notes = _rows_from_grid(grid, known, normalise)
    return SourceTable(path.name, headers, rows, encoding=encoding, notes=notes)


# -- XLSX ----------------------------------------------------------------------------


def _xml_parts(archive: zipfile.ZipFile, name: str, limits: ImportLimits) -> None:
    """Refuse a workbook that unpacks past the limit. zipfile never yields more
    than a member's declared size, so the declared sizes bound the work
    (overlapping members, the trick of the smallest zip bombs, count twice).
    Every member counts: a part's name says nothing of what openpyxl reads it as."""
    infos = archive.infolist()
    if len(infos) > 10_000:
        raise _unreadable(name, "XLSX", f"{len(infos)} parts")
    if sum(info.file_size for info in infos) > limits.max_unpacked_bytes:
        raise _too_large_unpacked(name, limits)


def _range(ref: str, name: str) -> tuple[int, int, int, int]:
    """``A1:C3`` as (min_col, min_row, max_col, max_row); a whole row or column
    reaches Excel's edge."""
    from openpyxl.utils.cell import range_boundaries

    try:
        min_col, min_row, max_col, max_row = range_boundaries(ref.replace("$", ""))
    except (TypeError, ValueError):
        raise _unreadable(name, "XLSX", f"bad cell range {ref[:40]!r}") from None
    return (
        min_col or 1,
        min_row or 1,
        max_col or EXCEL_MAX_COLUMNS,
        max_row or 1_048_576,
    )


def _cell(ref: str, name: str) -> tuple[int, int]:
    """``B3`` as (row 3, column 2)."""
    from openpyxl.utils.cell import coordinate_to_tuple

    try:
        return coordinate_to_tuple(ref)
    except (TypeError, ValueError):
        raise _unreadable(name, "XLSX", f"bad cell reference {ref[:40]!r}") from None


@dataclass
class _SheetScan:
    """What a first pass over a sheet's XML learns, in bounded time and memory,
    before any cell is expanded."""

    name: str
    limits: ImportLimits
    last_row: int = 0  # of a cell with a value
    last_column: int = 0
    merged: list[tuple[int, int, int, int]] = field(default_factory=list)
    no_result: set[tuple[int, int]] = field(default_factory=set)  # formulas never calculated
    # parser state
    rows: int = 0
    valued_rows: int = 0
    last_valued_row: int = 0
    cells: int = 0
    merged_cells: int = 0
    other: int = 0
    in_data: bool = False
    in_row: bool = False
    row_elements: int = 0
    row: int = 0
    column: int = 0
    cell: tuple[int, int] | None = None
    has_value: bool = False
    has_formula: bool = False
    in_value: bool = False

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        local = tag.rpartition(":")[2]
        limits = self.limits
        if self.in_row:
            self.row_elements += 1
            if self.row_elements > 4 * EXCEL_MAX_COLUMNS:
                raise _unreadable(self.name, "XLSX", f"row {self.row} has too many cells")
            if local == "c":
                self.cells += 1
                if self.cells > limits.max_cells:
                    raise _too_many_cells(self.name, limits)
                ref = attrs.get("r")
                if ref:
                    row, column = _cell(ref, self.name)
                else:
                    row, column = self.row, self.column + 1
                self.column = column
                self.cell = (row, column)
                self.has_value = self.has_formula = False
            elif local == "v":
                self.in_value = True
            elif local == "f":
                self.has_formula = True
            elif local == "is":
                self.has_value = True
            return
        if local == "row":
            self.in_row = True
            self.row_elements = 0
            self.rows += 1
            if self.rows > limits.max_lines:
                raise _too_many_lines(self.name, limits)
            number = attrs.get("r")
            try:
                self.row = int(float(number)) if number else self.row + 1
            except ValueError:
                raise _unreadable(self.name, "XLSX", f"bad row number {number[:20]!r}") from None
            self.column = 0
            return
        if local == "sheetData":
            self.in_data = True
            return
        self.other += 1
        if self.other > SHEET_OTHER_ELEMENTS:
            raise _unreadable(self.name, "XLSX", "too many elements outside the cells")
        if local == "dimension" and attrs.get("ref"):
            ref = attrs["ref"]
            min_col, min_row, max_col, max_row = _range(ref, self.name)
            area = (max_col - min_col + 1) * (max_row - min_row + 1)
            if area > limits.max_cells:
                raise ImportTooLarge(
                    f"{self.name}：工作表声明的范围 {ref} 有 {area} 个单元格，超过 "
                    f"{limits.max_cells} 的上限；请把有数据的部分复制到新工作簿再导入 "
                    f"(the sheet declares the range {ref}, {area:,} cells, more than the "
                    f"limit of {limits.max_cells:,}; copy the data into a new workbook)"
                )
        elif local == "mergeCell" and attrs.get("ref"):
            ref = attrs["ref"]
            bounds = _range(ref, self.name)
            min_col, min_row, max_col, max_row = bounds
            area = (max_col - min_col + 1) * (max_row - min_row + 1)
            self.merged_cells += area
            if self.merged_cells > limits.max_cells:
                raise ImportTooLarge(
                    f"{self.name}：合并单元格 {ref} 使合并区域超过 {limits.max_cells} "
                    f"个单元格的上限，请取消合并后再导入 (the merged range {ref} makes the "
                    f"merged cells more than {limits.max_cells:,}; unmerge them and import again)"
                )
            self.merged.append(bounds)

    def end(self, tag: str) -> None:
        local = tag.rpartition(":")[2]
        if local == "v":
            self.in_value = False
        elif local == "c" and self.cell is not None:
            row, column = self.cell
            if self.has_formula and not self.has_value:
                self.no_result.add(self.cell)
            if self.has_value or self.has_formula:
                if column > self.limits.max_columns:
                    raise _too_many_columns(self.name, row, self.limits)
                if row > self.limits.max_lines:
                    raise _too_many_lines(self.name, self.limits)
                if row != self.last_valued_row:
                    self.last_valued_row = row
                    self.valued_rows += 1
                self.last_row = max(self.last_row, row)
                self.last_column = max(self.last_column, column)
                # Every row is read as wide as the widest: bound that before reading.
                if self.valued_rows * self.last_column > self.limits.max_cells:
                    raise _too_many_cells(self.name, self.limits)
            self.cell = None
        elif local == "row":
            self.in_row = False
        elif local == "sheetData":
            self.in_data = False

    def text(self, data: str) -> None:
        if self.in_value and not self.has_value and data.strip():
            self.has_value = True


def _scan_sheet(source, name: str, limits: ImportLimits) -> _SheetScan:
    scan = _SheetScan(name, limits)
    parser = expat.ParserCreate()
    parser.buffer_text = True
    parser.StartElementHandler = scan.start
    parser.EndElementHandler = scan.end
    parser.CharacterDataHandler = scan.text

    def refuse(*_: Any) -> None:
        raise _unreadable(name, "XLSX", "a sheet declares a DTD")

    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    try:
        while chunk := source.read(1 << 16):
            parser.Parse(chunk, False)
        parser.Parse(b"", True)
    except expat.ExpatError as error:
        raise _unreadable(name, "XLSX", f"broken sheet XML ({error})") from None
    return scan


def _column_letter(number: int) -> str:
    from openpyxl.utils.cell import get_column_letter

    return get_column_letter(number)


def _read_xlsx(path: Path, known: set[str], normalise, limits: ImportLimits) -> SourceTable:
    from openpyxl import load_workbook

    try:
        with zipfile.ZipFile(path) as archive:
            _xml_parts(archive, path.name, limits)
        # Read-only: cells are streamed, merged ranges are not expanded and the
        # declared dimension is not trusted (the scan below bounds them all).
        book = load_workbook(path, read_only=True, data_only=True, keep_links=False)
    except (ImportTooLarge, InvalidParameter):
        raise
    except Exception as error:  # openpyxl raises many kinds for a bad file
        raise _unreadable(path.name, "XLSX", str(error)) from None
    try:
        if not book.worksheets:
            raise _unreadable(path.name, "XLSX", "no worksheet")
        sheet = book.worksheets[0]
        # openpyxl keeps the sheet's part name private; it is the XML to scan.
        with book._archive.open(sheet._worksheet_path) as source:
            scan = _scan_sheet(source, path.name, limits)
        grid = _Grid(path.name, limits)
        rows = (
            sheet.iter_rows(min_row=1, max_row=scan.last_row, max_col=scan.last_column)
            if scan.last_row and scan.last_column
            else ()
        )
        for number, cells in enumerate(rows, start=1):
            row = []
            for column, cell in enumerate(cells, start=1):
                if cell.data_type == "e":
                    row.append(CellError(f"Excel error {cell.value}"))
                elif (number, column) in scan.no_result:
                    row.append(CellError("a formula with no saved result (save it in Excel first)"))
                else:
                    row.append(cell.value)
            grid.add(number, row, _column_letter)
        sheets = len(book.worksheets)
        title = sheet.title
    except (ImportTooLarge, InvalidParameter):
        raise
    except Exception as error:
        raise _unreadable(path.name, "XLSX", str(error)) from None
    finally:
        book.close()
    _spread_merged(grid, scan.merged, limits)
    headers, rows, header_notes = _rows_from_grid(grid, known, normalise)
    notes = [f"sheet {title!r}", *header_notes] + (
        [f"{sheets - 1} more sheets ignored"] if sheets > 1 else []
    )
    return SourceTable(path.name, headers, rows, notes=notes)


def _spread_merged(
    grid: _Grid, merged: list[tuple[int, int, int, int]], limits: ImportLimits
) -> None:
    """A merged cell holds its value only in the top-left corner: spread it.
    The scan bounded the merged cells in all, so this is bounded too."""
    for min_col, min_row, max_col, max_row in merged:
        top = grid.rows[min_row - 1] if min_row <= len(grid.rows) else []
        value = top[min_col - 1] if min_col <= len(top) else None
        if value is None:
            # Spreading nothing only clears the range (Excel keeps no other value).
            max_row = min(max_row, len(grid.rows))
            max_col = min(max_col, grid.width)
        elif max_col > limits.max_columns:
            raise _too_many_columns(grid.name, min_row, limits)
        elif max_row > limits.max_lines:
            raise _too_many_lines(grid.name, limits)
        while len(grid.rows) < max_row:
            grid.rows.append([])
            grid.lines.append(len(grid.rows))
        for r in range(min_row - 1, max_row):
            row = grid.rows[r]
            if len(row) < max_col:
                row.extend([None] * (max_col - len(row)))
            row[min_col - 1 : max_col] = [value] * (max_col - min_col + 1)
        grid.width = max(grid.width, max_col)


# -- GeoJSON, GeoPackage, Shapefile --------------------------------------------------


#: A JSON ``\u0000`` escape: a backslash not itself escaped, then u0000.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _check_spatial_file(path: Path, limits: ImportLimits) -> None:
    """The file is what its name says, before GDAL (which picks a driver by
    content: a ``.geojson`` holding a VRT would read files off the server)."""
    suffix = path.suffix.lower()
    with path.open("rb") as stream:
        head = stream.read(64)
    if suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                infos = archive.infolist()
        except (zipfile.BadZipFile, OSError) as error:
            raise _unreadable(path.name, "zipped Shapefile", str(error)) from None
        files = [i for i in infos if not i.is_dir()]
        suffixes = {Path(i.filename).suffix.lower() for i in files}
        strange = sorted(suffixes - SHAPEFILE_PARTS)
        if ".shp" not in suffixes or strange or len(files) > 1_000:
            raise InvalidParameter(
                "file",
                f"{path.name}：ZIP 文件只能包含 Shapefile（.shp、.shx、.dbf、.prj 等） "
                f"(a ZIP file must hold a Shapefile only; found {', '.join(strange) or 'no .shp'})",
            )
        if sum(i.file_size for i in files) > limits.max_unpacked_bytes:
            raise _too_large_unpacked(path.name, limits)
        return
    if path.stat().st_size > limits.max_unpacked_bytes:
        raise _too_large_unpacked(path.name, limits)
    if suffix == ".gpkg":
        ok = head.startswith(b"SQLite format 3\x00")
    elif suffix == ".shp":
        ok = head.startswith(b"\x00\x00\x27\x0a")  # the Shapefile file code, 9994
    else:  # .geojson, .json
        ok = head.removeprefix(codecs.BOM_UTF8).lstrip().startswith(b"{")
    if not ok:
        kind = {".gpkg": "GeoPackage", ".shp": "Shapefile"}.get(suffix, "GeoJSON")
        raise _unreadable(path.name, kind, "its content is not of that kind")
    if suffix in {".geojson", ".json"} and _holds_nul(path.read_bytes()):
        # GDAL reads a string only up to its first NUL: "示例\u0000站" would
        # arrive as "示例", silently cut, where every write path refuses it.
        raise InvalidParameter(
            "file",
            f"{path.name}：文件中有空字符（\\u0000），任何字段都不能含有 "
            "(the file holds a NUL character, \\u0000, which no field may hold)",
        )


def _holds_nul(text: bytes) -> bool:
    return b"\x00" in text or _JSON_NUL.search(text) is not None


def _require_table(path: Path, layer: str) -> None:
    """A GeoPackage layer must be a plain table: a view (a recursive one above
    all) can make endless rows from a few bytes."""
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        connection = sqlite3.connect(uri, uri=True)
        try:
            found = connection.execute(
                "SELECT type, sql FROM sqlite_master WHERE name = ? COLLATE NOCASE "
                "ORDER BY name = ? DESC",
                (layer, layer),
            ).fetchone()
        finally:
            connection.close()
    except sqlite3.Error as error:
        raise _unreadable(path.name, "GeoPackage", str(error)) from None
    kind, sql = found if found else (None, "")
    if kind != "table" or (sql or "").lstrip().upper().startswith("CREATE VIRTUAL"):
        what = "视图（view）" if kind == "view" else "虚拟表或未知对象"
        raise InvalidParameter(
            "file",
            f"{path.name}：图层 {layer} 是{what}，只能导入数据表；"
            "请在 GIS 软件中把它导出为普通图层 "
            f"(layer {layer!r} is a {kind or 'virtual table'}, not a table; export it as a "
            "plain layer in your GIS software)",
        )


def _read_spatial(path: Path, limits: ImportLimits) -> SourceTable:
    import pyogrio

    _check_spatial_file(path, limits)
    try:
        layers = pyogrio.list_layers(path)
        if len(layers) == 0:
            raise ValueError("no layers")
        layer = str(layers[0][0])
        if path.suffix.lower() == ".gpkg":
            _require_table(path, layer)
        info = pyogrio.read_info(path, layer=layer)
    except (ImportTooLarge, InvalidParameter):
        raise
    except Exception as error:  # GDAL's errors for unreadable files vary by driver
        raise _unreadable(path.name, "spatial", str(error)) from None
    if info.get("features", -1) > limits.max_rows:  # -1 when counting is not cheap
        raise _too_many_rows(path.name, limits)
    if len(info.get("fields", ())) > limits.max_columns:
        raise _too_many_columns(path.name, 1, limits)
    try:
        frame = pyogrio.read_dataframe(path, layer=layer, max_features=limits.max_rows + 1)
    except Exception as error:
        raise _unreadable(path.name, "spatial", str(error)) from None
    if len(frame) > limits.max_rows:
        raise _too_many_rows(path.name, limits)
    headers = [c for c in frame.columns if c != "geometry"]
    if len(frame) * max(len(headers), 1) > limits.max_cells:
        raise _too_many_cells(path.name, limits)
    for header in headers:
        if frame[header].dtype != object:
            continue
        lengths = frame[header].map(lambda v: len(v) if isinstance(v, str) else 0)
        if len(lengths) and lengths.max() > limits.max_cell_chars:
            raise _too_long_cell(path.name, int(lengths.to_numpy().argmax()) + 1, header, limits)
    crs = frame.crs.to_string() if frame.crs is not None else None
    if frame.crs is not None and not frame.crs.equals("EPSG:4326"):
        if frame.crs.to_epsg() == 4490:  # CGCS2000 and WGS-84 agree to a few cm
            frame = frame.set_crs(4326, allow_override=True)
        else:
            frame = frame.to_crs(4326)
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


def read_table(
    path: Path, known: set[str], normalise, limits: ImportLimits = DEFAULT_LIMITS
) -> SourceTable:
    """Read ``path`` by its extension. ``known`` are the normalised header
    names the import understands, used to find the header row; a file over
    one of ``limits`` raises ``ImportTooLarge`` as soon as it is found so."""
    if not path.exists():
        raise InvalidParameter("file", f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in {".csv", ".txt"}:
        return _read_csv(path, known, normalise, limits)
    if suffix in {".xlsx", ".xlsm"}:
        return _read_xlsx(path, known, normalise, limits)
    if suffix in SPATIAL:
        return _read_spatial(path, limits)
    raise InvalidParameter(
        "file",
        f"{path.name}: unsupported file type {suffix!r}; use CSV, XLSX, GeoJSON, "
        "GeoPackage or Shapefile",
    )
