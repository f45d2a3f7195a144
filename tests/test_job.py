"""The scan job: one owner of models, thresholds, reuse and columns, the same rows for the library and the CLI."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from deepscan.job import ScanJob, ScanSettings, scan
from deepscan.model import build_model, save_model
from deepscan.record import Record

from .conftest import TINY, write_image


def test_the_library_gives_exactly_the_rows_the_command_writes(cli, photos: Path, tiny_model: Path):
    columns = ("sha256", "bytes", "model")
    _, out, _ = cli("scan", photos, "--model", tiny_model, "-q", "-f", "jsonl", "--columns", ",".join(columns))
    written = [json.loads(line) for line in out.splitlines()]
    records = list(scan([photos], ScanSettings(model=tiny_model, columns=columns)))
    keys = ("path", "label", "score", "error", *columns)
    assert [{k: r.values()[k] for k in keys} for r in records] == [{k: row[k] for k in keys} for row in written]


def test_every_label_follows_the_threshold_of_the_model_that_scored_it(photos: Path, tiny_model: Path):
    for threshold in (0.0, 1.0):
        with ScanJob(ScanSettings(model=tiny_model, threshold=threshold)) as job:
            (model,) = job.models
            assert model.threshold == threshold
            records = [
                r for files in job.run([str(p) for p in sorted(photos.rglob("*.*"))]) for f in files for r in f.records
            ]
        scored = [r for r in records if r.score is not None]
        assert scored and all(r.label == ("fake" if threshold == 0.0 else "real") for r in scored)
        assert all(r.label == "" for r in records if r.error)


def test_the_model_loads_only_when_a_file_is_left_to_score(photos: Path, tiny_model: Path, tmp_path: Path):
    cache = tmp_path / "c.db"
    images = [str(p) for p in sorted(photos.rglob("*.jpg"))]
    heard: list[str] = []
    with ScanJob(ScanSettings(model=tiny_model, cache=cache), status=heard.append) as job:
        first = [f.verdict for files in job.run(images) for f in files]
    assert heard[0] == "loading model" and job.device is not None
    heard.clear()
    with ScanJob(ScanSettings(model=tiny_model, cache=cache), status=heard.append) as job:
        again = [f.verdict for files in job.run(images) for f in files]
        assert heard == [] and job.device is None and not job.models[0].loaded
    assert again == first


def test_cache_entries_are_committed_batch_by_batch(tmp_path: Path, tiny_model: Path):
    images = [str(write_image(tmp_path / "in" / f"{i}.png", i)) for i in range(6)]
    cache = tmp_path / "c.db"
    with ScanJob(ScanSettings(model=tiny_model, cache=cache, batch_size=2)) as job:
        batches = job.run(images)
        next(batches)  # one batch done; the scan is still running
        stored = sqlite3.connect(cache).execute("SELECT COUNT(*) FROM results").fetchone()[0]
        assert stored == 2  # another connection sees it: committed, not waiting for the end
        batches.close()


def test_a_file_swapped_after_hashing_is_scored_and_cached_as_the_content_hashed(
    tmp_path: Path, tiny_model: Path, monkeypatch
):
    """The cache decodes the very bytes it hashed, so a swap can never store one content's score under another's."""
    import deepscan.job

    path = write_image(tmp_path / "a.png", 1)
    original = path.read_bytes()
    (honest,) = scan([path], ScanSettings(model=tiny_model))
    read = deepscan.job.read_bytes

    def read_then_swap(target):
        data = read(target)
        write_image(Path(target), 2)  # another content lands right after the read
        return data

    monkeypatch.setattr(deepscan.job, "read_bytes", read_then_swap)
    settings = ScanSettings(model=tiny_model, cache=tmp_path / "c.db")
    (swapped,) = scan([path], settings)
    assert swapped.score == pytest.approx(honest.score, abs=1e-6)  # what was hashed is what was scored
    monkeypatch.undo()
    path.write_bytes(original)
    with ScanJob(settings) as job:
        (files,) = job.run([str(path)])
        assert not job.models[0].loaded  # the original content hits its own entry
    assert files[0].verdict.score == swapped.score


def test_read_errors_are_not_cached_and_need_no_model(tmp_path: Path, tiny_model: Path):
    cache = tmp_path / "c.db"
    with ScanJob(ScanSettings(model=tiny_model, cache=cache)) as job:
        (files,) = job.run([str(tmp_path / "missing.png")])
        assert not job.models[0].loaded
    assert files[0].verdict.error == "file not found"
    assert sqlite3.connect(cache).execute("SELECT COUNT(*) FROM results").fetchone()[0] == 0


def test_a_column_provider_never_fails_a_row(tmp_path: Path, tiny_model: Path):
    class Broken:
        columns = ("broken",)

        def values(self, path: str, digest: str | None) -> dict:
            raise RuntimeError("provider bug")

    path = write_image(tmp_path / "a.png")
    with ScanJob(ScanSettings(model=tiny_model)) as job:
        job.providers.append(Broken())
        (files,) = job.run([str(path)])
    record = files[0].verdict
    assert record.score is not None and record.columns["broken"] is None


def test_another_scorer_plugs_in_without_touching_the_job(tmp_path: Path, tiny_model: Path):
    """The seam: a back end is a callable building a scorer from the settings and models."""

    class Constant:
        def __init__(self, settings: ScanSettings, models: list) -> None:
            self.model = models[0]
            self.cache_key = "constant"
            self.device = "nowhere"

        def models(self) -> list:
            return [self.model]

        def score(self, sources):
            for source in sources:
                yield [Record(source.path, 0.75, model=self.model.identity)]

    paths = [str(write_image(tmp_path / f"{i}.png", i)) for i in range(3)]
    with ScanJob(ScanSettings(model=tiny_model, threshold=0.5), backend=Constant) as job:
        records = [r for files in job.run(paths) for f in files for r in f.records]
    assert [(r.score, r.label) for r in records] == [(0.75, "fake")] * 3
    assert job.device == "nowhere"


def test_resume_refuses_rows_scored_by_another_model(tmp_path: Path, tiny_model: Path):
    from deepscan.errors import OutputError

    other = tmp_path / "other.keras"
    model, spec = build_model("reference", TINY)
    save_model(model, spec, other)
    image = write_image(tmp_path / "a.png")
    report = tmp_path / "r.jsonl"
    with ScanJob(ScanSettings(model=other)) as job:
        (files,) = job.run([str(image)])
    report.write_text(json.dumps(files[0].verdict.values()) + "\n")
    with pytest.raises(OutputError, match=r"other\.keras"):
        ScanJob(ScanSettings(model=tiny_model, resume=report))
