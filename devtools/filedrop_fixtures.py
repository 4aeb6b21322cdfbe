"""Deterministic example files of the declared file sources (``fixtures/filedrop/``), and an XLSX writer.

``uv run --frozen python -m devtools.filedrop_fixtures`` rewrites the committed files:

- ``instad/enquete-agricole-2023.csv``, ``…-2024.csv``: an INStaD-style agricultural survey
  (``;``-separated, decimal comma), one row per commune and crop of a survey year;
- ``cadastre/parcelles-cotonou.jsonl``: cadastre parcels of Cotonou, one JSON object per line;
- ``invalid/enquete-agricole-2022.csv``: a survey breaking its checks (misspelt department,
  yields out of range, a key twice), used only by tests, which copy it into a temp folder.

The figures are invented but plausible (yields of the right order per crop, Benin's
departments and some of their communes).
"""

from __future__ import annotations

import json
import random
import zipfile
from collections.abc import Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "filedrop"
SURVEY_HEADER = ("survey_year", "department", "commune", "crop", "area_ha", "yield_kg_ha", "production_t")
COMMUNES: dict[str, tuple[str, ...]] = {
    "Alibori": ("Banikoara", "Kandi"),
    "Atacora": ("Natitingou",),
    "Borgou": ("Parakou", "Nikki"),
    "Donga": ("Djougou",),
    "Collines": ("Savalou", "Glazoué"),
    "Zou": ("Bohicon",),
    "Plateau": ("Kétou",),
    "Ouémé": ("Adjohoun",),
    "Couffo": ("Aplahoué",),
}
NORTH = frozenset({"Alibori", "Atacora", "Borgou", "Donga"})
CROPS_NORTH = ("Maïs", "Sorgho", "Coton", "Igname")
CROPS_SOUTH = ("Maïs", "Manioc", "Niébé")
YIELD_KG_HA = {"Maïs": 1350, "Sorgho": 980, "Coton": 1150, "Igname": 13500, "Manioc": 14800, "Niébé": 780}
PARCEL_USES = ("residential", "residential", "residential", "commercial", "mixed", "public", "vacant")
TITLES = ("titre_foncier", "certificat_foncier", "none")


def decimal_comma(value: float, digits: int) -> str:
    """A number as the survey writes it: fixed decimals, decimal comma."""
    return f"{value:.{digits}f}".replace(".", ",")


def survey_rows(year: int) -> list[tuple[Any, ...]]:
    """One row per commune and crop of the survey ``year`` (typed values)."""
    rng = random.Random(year)
    rows: list[tuple[Any, ...]] = []
    for department, communes in COMMUNES.items():
        crops = CROPS_NORTH if department in NORTH else CROPS_SOUTH
        for commune in communes:
            for crop in crops:
                area = round(rng.uniform(800, 42000), 1)
                measured = rng.random() > 0.08
                yield_kg = round(YIELD_KG_HA[crop] * rng.uniform(0.75, 1.25), 1) if measured else None
                production = round(area * yield_kg / 1000, 1) if yield_kg is not None else None
                rows.append((year, department, commune, crop, area, yield_kg, production))
    return rows


def survey_csv(rows: Sequence[tuple[Any, ...]]) -> str:
    """Survey rows as the INStaD CSV: ``;``-separated, decimal comma, empty for a missing value."""

    def cell(value: Any) -> str:
        if value is None:
            return ""
        return decimal_comma(value, 1) if isinstance(value, float) else str(value)

    return "".join(";".join(cell(v) for v in row) + "\n" for row in [SURVEY_HEADER, *rows])


def bad_survey_rows() -> list[tuple[Any, ...]]:
    """A 2022 survey that breaks its checks: a misspelt department, impossible yields, a key twice."""
    rows = survey_rows(2022)[:12]
    rows[1] = (2022, "Atakora", *rows[1][2:])
    rows[4] = (*rows[4][:5], -120.0, rows[4][6])
    rows[7] = (*rows[7][:5], 98000.0, rows[7][6])
    rows.append(rows[0])
    return rows


def parcels(count: int = 30) -> list[dict[str, Any]]:
    """Cadastre parcels of Cotonou (one commune per file)."""
    rng = random.Random(229)
    found = []
    for number in range(count):
        use = PARCEL_USES[number % len(PARCEL_USES)]
        title = TITLES[rng.randrange(len(TITLES))]
        registered = date(2012, 1, 1) + timedelta(days=rng.randrange(5000)) if title != "none" else None
        found.append(
            {
                "parcel_id": f"BJ-COT-{104000 + 37 * number:06d}",
                "commune": "Cotonou",
                "arrondissement": f"{1 + number % 13}e arrondissement",
                "area_m2": round(rng.uniform(180, 900) if use != "public" else rng.uniform(1500, 12000), 2),
                "land_use": use,
                "title_type": title,
                "registered_on": registered.isoformat() if registered else None,
                "built": use not in ("vacant",),
            }
        )
    return found


def jsonl(rows: Sequence[dict[str, Any]]) -> str:
    """Objects as JSON lines."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def _column_letters(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _cell(reference: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return f'<c r="{reference}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int | float):
        return f'<c r="{reference}"><v>{value!r}</v></c>'
    return f'<c r="{reference}" t="inlineStr"><is><t>{escape(str(value))}</t></is></c>'


def write_xlsx(path: Path, sheet: str, rows: Sequence[Sequence[Any]]) -> Path:
    """A minimal one-sheet XLSX workbook (numbers, booleans, inline strings), byte-identical for the same rows."""
    body = "".join(
        f'<row r="{r + 1}">' + "".join(_cell(f"{_column_letters(c)}{r + 1}", v) for c, v in enumerate(row)) + "</row>"
        for r, row in enumerate(rows)
    )
    head = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    package = "http://schemas.openxmlformats.org/package/2006"
    office = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    sheet_type = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    parts = {
        "[Content_Types].xml": f'{head}<Types xmlns="{package}/content-types">'
        f'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="/xl/workbook.xml" ContentType="{sheet_type}.sheet.main+xml"/>'
        f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{sheet_type}.worksheet+xml"/></Types>',
        "_rels/.rels": f'{head}<Relationships xmlns="{package}/relationships">'
        f'<Relationship Id="rId1" Type="{office}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
        "xl/workbook.xml": f'{head}<workbook xmlns="{main}" xmlns:r="{office}"><sheets>'
        f'<sheet name="{escape(sheet)}" sheetId="1" r:id="rId1"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": f'{head}<Relationships xmlns="{package}/relationships">'
        f'<Relationship Id="rId1" Type="{office}/worksheet" Target="worksheets/sheet1.xml"/></Relationships>',
        "xl/worksheets/sheet1.xml": f'{head}<worksheet xmlns="{main}"><sheetData>{body}</sheetData></worksheet>',
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in parts.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), text)
    return path


def write_fixtures(root: Path = FIXTURES) -> list[Path]:
    """Write every example file under ``root``; returns their paths."""
    files = {
        root / "instad" / "enquete-agricole-2023.csv": survey_csv(survey_rows(2023)),
        root / "instad" / "enquete-agricole-2024.csv": survey_csv(survey_rows(2024)),
        root / "cadastre" / "parcelles-cotonou.jsonl": jsonl(parcels()),
        root / "invalid" / "enquete-agricole-2022.csv": survey_csv(bad_survey_rows()),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return list(files)


if __name__ == "__main__":
    for written in write_fixtures():
        print(written.relative_to(FIXTURES.parents[1]))
