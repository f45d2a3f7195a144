"""An HTML report for people: counts, a score histogram, every file most suspicious first, heat maps.

The page is one HTML file that works offline (no CDN, no server) beside a
folder of thumbnails it refers to relatively (``<name>_files/``): keep the
two together to mail or archive a report. The files' data sits in the page
as JSON and a little inline JavaScript renders it a page of 100 at a time,
so a report of 100,000 files opens and scrolls. Thumbnails are made in one
streaming pass, one image in memory at a time.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import shutil
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw

from deepscan.errors import OutputError
from deepscan.evidence import EVIDENCE_COLUMN, evidence_text
from deepscan.files import umask
from deepscan.pipeline import ImageError, open_image
from deepscan.record import Record
from deepscan.report import atomic_file, report_files, resolved

if TYPE_CHECKING:
    from deepscan.job import ScannedFile

THUMB_SIDE = 200
HISTOGRAM_BINS = 20


@dataclass
class Entry:
    """One file in the report: its verdict, evidence and face boxes."""

    path: str
    score: float | None
    label: str
    error: str = ""
    evidence: str = ""
    faces: list[tuple[list[int], float | None]] = field(default_factory=list)  # (box, score) of each face
    explain_box: list[int] | None = None  # face mode: the face the verdict came from (its crop is explained)
    model: str = ""


class EntryStore:
    """Entries kept on disk (SQLite in a temporary folder), so a report's memory does not grow with its rows.

    Counts and the score histogram are kept as entries arrive; ``scored``
    reads them back most suspicious first.
    """

    def __init__(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="deepscan-report-")
        self._db = sqlite3.connect(Path(self._folder.name) / "entries.db")
        self._db.execute("CREATE TABLE entries (score REAL, entry TEXT NOT NULL)")
        self.labels: Counter[str] = Counter()
        self.histogram = [0] * HISTOGRAM_BINS
        self.count = 0
        self.models: set[str] = set()  # the model identities (name@sha256:...) the entries carry
        self.faces = False  # whether some entry's verdict is a face

    def add(self, entry: Entry) -> None:
        self.count += 1
        self.labels[entry.label or "error"] += 1
        self.models.add(entry.model)
        self.faces |= entry.explain_box is not None
        if entry.score is not None:
            self.histogram[min(int(entry.score * HISTOGRAM_BINS), HISTOGRAM_BINS - 1)] += 1
        self._db.execute("INSERT INTO entries VALUES (?, ?)", (entry.score, json.dumps(asdict(entry))))

    def scored(self) -> Iterator[Entry]:
        """Scored entries, most suspicious first."""
        yield from self._read("SELECT entry FROM entries WHERE score IS NOT NULL ORDER BY score DESC, rowid")

    def failed(self) -> Iterator[Entry]:
        yield from self._read("SELECT entry FROM entries WHERE score IS NULL ORDER BY rowid")

    def _read(self, query: str) -> Iterator[Entry]:
        for (text,) in self._db.execute(query):
            yield Entry(**json.loads(text))

    def close(self) -> None:
        self._db.close()
        self._folder.cleanup()

    def __enter__(self) -> EntryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def entries_from_records(files: Iterable[ScannedFile]) -> list[Entry]:
    """Entries from a scan job's finished files."""
    return [
        _entry(scanned.records, evidence_text(scanned.verdict.columns.get(EVIDENCE_COLUMN) or [])) for scanned in files
    ]


def entries_from_report(path: Path) -> Iterator[Entry]:
    """Entries from a report deepscan wrote (CSV, JSON or JSON Lines), streamed."""
    for group in report_files(path):
        evidence = group[0][1].get(EVIDENCE_COLUMN) or ""
        yield _entry(
            [record for record, _ in group], evidence if isinstance(evidence, str) else evidence_text(evidence)
        )


def _entry(records: list[Record], evidence: str) -> Entry:
    """A file's entry: its verdict (the most suspicious of its records), evidence and face boxes."""
    verdict = max(records, key=lambda record: -1.0 if record.score is None else record.score)
    return Entry(
        verdict.path,
        verdict.score,
        verdict.label,
        verdict.error,
        evidence,
        [(list(record.box), record.score) for record in records if record.box is not None],
        list(verdict.box) if verdict.box is not None else None,
        verdict.model,
    )


Explainer = Callable[[Entry], Image.Image | None]


def write_html(
    target: Path,
    store: EntryStore,
    facts: list[tuple[str, str]],
    *,
    explain: Explainer | None = None,
    explain_count: int = 0,
    threshold: float | None = None,
) -> None:
    """Write the report page and its thumbnails in one streaming pass; heat maps for the most suspicious files.

    ``threshold``, when known, is marked on the histogram.
    """
    assets = thumbnail_folder(target)
    try:  # a fresh folder, renamed into place at the end: nothing planted in the old one is ever written through
        fresh = Path(tempfile.mkdtemp(dir=assets.parent, prefix=f".{assets.name}."))
        fresh.chmod(0o777 & ~umask())  # as an ordinary new folder, not mkdtemp's 0700: a web server may serve it
    except OSError as err:
        raise OutputError(f"cannot write the thumbnails beside {target}: {err.strerror or err}") from None
    try:
        _write_page(target, fresh, assets.name, store, facts, explain, explain_count, threshold)
        _replace_folder(assets, fresh)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def thumbnail_folder(page: Path) -> Path:
    """Where a page's thumbnails go (``<name>_files`` beside it); OutputError if a file is in the way."""
    folder = page.with_name(f"{page.stem}_files")
    if not folder.is_symlink() and folder.exists() and not folder.is_dir():
        raise OutputError(f"cannot write the thumbnails to {folder}: a file is in the way")
    return folder


def _replace_folder(folder: Path, fresh: Path) -> None:
    """Put ``fresh`` where ``folder`` is; a link there is removed, never followed, and old files do not linger."""
    if folder.is_symlink():
        folder.unlink()
    elif folder.exists():
        old = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.old."))
        folder.rename(old / folder.name)
        shutil.rmtree(old, ignore_errors=True)
    fresh.rename(folder)


def _write_page(
    target: Path,
    assets: Path,
    assets_name: str,
    store: EntryStore,
    facts: list[tuple[str, str]],
    explain: Explainer | None,
    explain_count: int,
    threshold: float | None,
) -> None:
    title = html.escape(f"deepscan report: {store.count} files")
    head, tail = PAGE.split("{data}")
    with atomic_file(resolved(target), keep_interrupted=False) as page:
        page.write(
            head.format(
                title=title,
                facts="".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in facts),
                histogram=_histogram(store.histogram, threshold),
                style=STYLE,
                policy=POLICY,
            )
        )
        page.write('{"files": [')
        for index, entry in enumerate(store.scored()):
            heat = _heat_map(entry, assets / f"{index:06d}.heat.jpg", explain) if index < explain_count else None
            thumb = thumbnail(entry, assets / f"{index:06d}.jpg")
            item = {
                "path": entry.path,
                "score": round(entry.score or 0.0, 6),
                "label": entry.label,
                "evidence": entry.evidence,
                "faces": len(entry.faces),
                "thumb": thumb and f"{assets_name}/{thumb.name}",
                "heat": heat and f"{assets_name}/{heat.name}",
            }
            page.write(("," if index else "") + _script_json(item))
        page.write('], "errors": [')
        for index, entry in enumerate(store.failed()):
            item = {"path": entry.path, "error": entry.error, "label": entry.label, "evidence": entry.evidence}
            page.write(("," if index else "") + _script_json(item))
        page.write("]}")
        page.write(tail.format(script=SCRIPT))


def _script_json(item: dict[str, Any]) -> str:
    """JSON inert inside a <script> element: no '<', '>' or '&' at all (as Django's json_script).

    Escaping only '</' is not enough: '<!--<script>' in a file name puts the
    HTML tokenizer in its double-escaped state and hides the rest of the page.
    """
    return json.dumps(item).translate(SCRIPT_SAFE)


SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def _heat_map(entry: Entry, destination: Path, explain: Explainer | None) -> Path | None:
    picture = explain(entry) if explain is not None else None
    if picture is None:
        return None
    picture.resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR).save(destination, quality=85)
    return destination


def thumbnail(entry: Entry, destination: Path) -> Path | None:
    """A small JPEG of the file with its face boxes drawn; None when it cannot be read."""

    def draw(image: Image.Image, original: tuple[int, int]) -> Image.Image:
        image = image.copy()
        image.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BILINEAR)
        scale = image.width / original[0]
        pen = ImageDraw.Draw(image)
        for box, score in entry.faces:
            x, y, w, h = (v * scale for v in box)
            colour = (230, 40, 40) if box == entry.explain_box else (250, 200, 40)
            pen.rectangle((x, y, x + w, y + h), outline=colour, width=2)
            if score is not None:
                pen.text((x + 2, y + 2), f"{score:.2f}", fill=colour)
        return image

    try:
        open_image(entry.path, (THUMB_SIDE, THUMB_SIDE), draw).save(destination, quality=80)
    except (ImageError, OSError):
        return None
    return destination


def _histogram(counts: list[int], threshold: float | None = None) -> str:
    """The score distribution as an inline SVG bar chart, with the threshold as a dashed line."""
    top = max(counts) or 1
    width, height, bar = 400, 120, 400 / HISTOGRAM_BINS
    bars = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - 100 * c / top:.1f}" width="{bar - 2:.1f}" height="{100 * c / top:.1f}">'
        f"<title>{i / HISTOGRAM_BINS:.2f}-{(i + 1) / HISTOGRAM_BINS:.2f}: {c} files</title></rect>"
        for i, c in enumerate(counts)
    )
    if threshold is not None:
        x = threshold * width
        bars += (
            f'<line x1="{x:.1f}" y1="0" x2="{x:.1f}" y2="{height}" class="threshold"/>'
            f'<text x="{min(x + 3, width - 90):.1f}" y="10">threshold {threshold:.3f}</text>'
        )
    return (
        f'<svg id="histogram" viewBox="0 0 {width} {height + 16}" width="{width}" height="{height + 16}" '
        f'role="img" aria-label="score histogram">{bars}'
        f'<text x="0" y="{height + 14}">0 (real)</text><text x="{width - 60}" y="{height + 14}">1 (fake)</text></svg>'
    )


STYLE = """
body{font:14px system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table.facts th{text-align:left;padding-right:16px;font-weight:600}
#histogram rect{fill:#4a7bd0}#histogram text{font-size:11px;fill:#555}
#histogram .threshold{stroke:#d33;stroke-width:1.5;stroke-dasharray:4 3}
.controls{margin:16px 0;display:flex;gap:12px;align-items:center;flex-wrap:wrap}
.controls input{width:320px;padding:4px}
#files{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}
.card.fake{border-color:#d33}
.card img{width:100%;max-width:200px;display:block;margin:auto;border-radius:4px}
.pics{display:flex;gap:4px}.pics img{width:50%}
.bar{height:8px;background:#eee;border-radius:4px;margin:6px 0}
.bar span{display:block;height:8px;border-radius:4px;background:#3a3}
.fake .bar span{background:#d33}
.label{font-weight:700;text-transform:uppercase;font-size:12px}.fake .label{color:#d33}
.path{word-break:break-all;font-size:12px;color:#333;unicode-bidi:isolate}
.evidence{font-size:12px;color:#7a4b00;overflow-wrap:anywhere;unicode-bidi:isolate}
.caption{font-size:11px;color:#666;margin-top:2px}
.noimg{height:120px;display:flex;align-items:center;justify-content:center;color:#999;background:#f0f0f0}
#errors td{padding:2px 12px 2px 0;font-size:12px;word-break:break-all;unicode-bidi:isolate}
"""

SCRIPT = """
(function () {
  const data = JSON.parse(document.getElementById('data').textContent);
  const pageSize = 100;
  const HEAT_CAPTION = 'heat map (Grad-CAM): the image dimmed, and red to yellow where the score came from ' +
    '(yellow: most); parts left dim weighed little';
  const params = new URLSearchParams(location.search);
  const state = {filter: params.get('filter') || 'all', query: params.get('q') || '', page: 0};
  const filterBox = document.getElementById('filter'), searchBox = document.getElementById('search');
  filterBox.value = state.filter; searchBox.value = state.query;

  function matches(item) {
    return (state.filter === 'all' || item.label === state.filter) &&
      item.path.toLowerCase().includes(state.query.toLowerCase());
  }
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function card(item) {
    const box = el('div', 'card ' + item.label);
    box.dataset.path = item.path;
    const pics = el('div', 'pics');
    if (item.thumb) {
      const img = el('img'); img.loading = 'lazy'; img.src = item.thumb; img.alt = 'thumbnail'; pics.append(img);
    } else pics.append(el('div', 'noimg', 'no thumbnail'));
    if (item.heat) {
      const heat = el('img', 'heat'); heat.src = item.heat; heat.alt = 'heat map';
      heat.title = 'Grad-CAM: where the score came from'; pics.append(heat);
    }
    const bar = el('div', 'bar'), fill = el('span');
    fill.style.width = (100 * item.score).toFixed(1) + '%'; bar.append(fill);
    box.append(pics);
    if (item.heat) box.append(el('div', 'caption', HEAT_CAPTION));
    box.append(bar, el('span', 'label', item.label), el('span', 'score', ' ' + item.score.toFixed(3)));
    if (item.faces) box.append(el('span', 'faces', ' (' + item.faces + (item.faces === 1 ? ' face)' : ' faces)')));
    box.append(el('div', 'path', item.path));
    if (item.evidence) box.append(el('div', 'evidence', item.evidence));
    return box;
  }
  function render() {
    const shown = data.files.filter(matches);
    const pages = Math.max(1, Math.ceil(shown.length / pageSize));
    state.page = Math.min(state.page, pages - 1);
    const list = document.getElementById('files');
    list.replaceChildren(...shown.slice(state.page * pageSize, (state.page + 1) * pageSize).map(card));
    document.getElementById('count').textContent = shown.length + ' of ' + data.files.length + ' scored files';
    document.getElementById('page').textContent = 'page ' + (state.page + 1) + ' of ' + pages;
    document.getElementById('prev').disabled = state.page === 0;
    document.getElementById('next').disabled = state.page >= pages - 1;
    const rows = data.errors.filter(item => item.path.toLowerCase().includes(state.query.toLowerCase()));
    document.getElementById('errors').replaceChildren(...rows.map(item => {
      const tr = el('tr'); tr.append(el('td', 'path', item.path), el('td', '', item.error)); return tr;
    }));
    document.getElementById('error-count').textContent = rows.length;
  }
  filterBox.addEventListener('change', () => {
    state.filter = filterBox.value; state.page = 0; render();
  });
  searchBox.addEventListener('input', () => {
    state.query = searchBox.value; state.page = 0; render();
  });
  for (const [id, step] of [['prev', -1], ['next', 1]]) {
    document.getElementById(id).addEventListener('click', () => {
      state.page += step; render(); window.scrollTo(0, 0);
    });
  }
  render();
})();
"""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta http-equiv="Content-Security-Policy" content="{policy}">
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{style}</style></head>
<body>
<h1>{title}</h1>
<table class="facts">{facts}</table>
<h2>Scores</h2>
{histogram}
<div class="controls">
  <label>Show <select id="filter"><option value="all">all</option><option value="fake">fake</option>
  <option value="real">real</option></select></label>
  <input id="search" type="search" placeholder="search by path">
  <button id="prev">previous</button><span id="page"></span><button id="next">next</button>
  <span id="count"></span>
</div>
<div id="files"></div>
<h2>Could not be scored (<span id="error-count"></span>)</h2>
<table id="errors"></table>
<script type="application/json" id="data">{data}</script>
<script>{script}</script>
</body></html>
"""


def _digest(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


# Only the page's own style and script run; images come from its own folder; nothing is fetched elsewhere.
POLICY = (
    f"default-src 'none'; script-src {_digest(SCRIPT)}; style-src {_digest(STYLE)}; img-src 'self' file:; "
    "base-uri 'none'; form-action 'none'"
)
