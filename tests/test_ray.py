"""--ray: the same scan on Ray Data, in-process and on a head joined by address, compared with the local scan."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from deepscan.errors import ExitCode
from deepscan.job import ScanJob, ScanSettings
from deepscan.ray_scorer import ActorPlan, ClusterError, RayScorer, import_ray, ray_backend

from .conftest import write_image
from .test_awkward import interrupt_mid_scan, many_images, start_scan

if importlib.util.find_spec("ray") is None:  # looked up without importing Ray...
    pytest.skip("Ray is not installed", allow_module_level=True)
ray = import_ray()  # ...which deepscan imports its own way


@pytest.fixture(scope="module")
def local_ray():
    """Ray in this process with two CPUs, as the issue's tests ask.

    ray.init installs a SIGTERM handler that exits the process with 1 and
    leaves it behind after shutdown: the suite's own handler is put back.
    """
    on_sigterm = signal.getsignal(signal.SIGTERM)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    signal.signal(signal.SIGTERM, on_sigterm)


@pytest.fixture
def images(tmp_path: Path) -> list[str]:
    """Images of several formats and sizes, a corrupt file and an empty one, in a known order."""
    paths = [str(write_image(tmp_path / f"{i:02d}.{ext}", i, (40 + i, 30 + 2 * i))) for i, ext in
             enumerate(["png", "jpg", "webp", "png", "jpg", "bmp", "png", "jpg"] * 3)]  # fmt: skip
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (tmp_path / "empty.png").write_bytes(b"")
    paths[3:3] = [str(tmp_path / "corrupt.jpg")]
    paths.append(str(tmp_path / "empty.png"))
    return paths


def records(settings: ScanSettings, paths: list[str], backend=None) -> list:
    job = ScanJob(settings) if backend is None else ScanJob(settings, backend=backend)
    with job:
        return [record for files in job.run(paths) for scanned in files for record in scanned.records]


def assert_same_rows(ray_rows: list, local_rows: list) -> None:
    assert [r.path for r in ray_rows] == [r.path for r in local_rows]  # every file, in the local order
    for remote, local in zip(ray_rows, local_rows, strict=True):
        assert remote.label == local.label and remote.error == local.error and remote.model == local.model
        assert (remote.face, remote.box) == (local.face, local.box)
        if local.score is None:
            assert remote.score is None
        else:
            assert remote.score == pytest.approx(local.score, abs=1e-4)


def test_the_ray_scan_gives_the_local_rows(local_ray, images: list[str], tiny_model: Path):
    settings = ScanSettings(model=tiny_model, threshold=0.5, batch_size=4)
    local = records(settings, images)
    on_ray = records(settings, images, ray_backend("local"))
    assert_same_rows(on_ray, local)
    errors = {Path(r.path).name: r.error for r in on_ray if r.error}
    assert errors == {"corrupt.jpg": local[3].error, "empty.png": "empty file"}


def test_rows_arrive_in_order_across_windows_and_batches(local_ray, images: list[str], tiny_model: Path):
    settings = ScanSettings(model=tiny_model, batch_size=3)
    models = ScanJob(settings).models

    def small_windows(settings: ScanSettings, models: list) -> RayScorer:
        return RayScorer("local", settings, models, window_files=7)

    assert [m.identity for m in models] == [m.identity for m in ScanJob(settings, backend=small_windows).models]
    assert_same_rows(records(settings, images, small_windows), records(settings, images))


def test_the_cache_is_shared_with_the_local_scan(local_ray, images: list[str], tiny_model: Path, tmp_path: Path):
    cache = tmp_path / "scores.db"
    settings = ScanSettings(model=tiny_model, cache=cache, batch_size=4)
    first = records(settings, images, ray_backend("local"))
    with ScanJob(settings) as job:  # local, from the cache the Ray scan filled
        again = [r for files in job.run(images) for f in files for r in f.records]
        assert not job.models[0].loaded  # nothing left to score
    assert_same_rows(first, again)


def test_face_mode_on_ray_gives_the_local_rows(local_ray, tmp_path: Path):
    pytest.importorskip("mtcnn")
    data = pytest.importorskip("skimage.data")
    from PIL import Image

    from deepscan.faces import FaceSettings

    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.png")
    paths = [str(tmp_path / "astronaut.png"), str(write_image(tmp_path / "noise.png", 1)), str(tmp_path / "x.jpg")]
    (tmp_path / "x.jpg").write_bytes(b"broken")
    settings = ScanSettings(faces=FaceSettings(), batch_size=4)  # the packaged models: two views of each face
    local = records(settings, paths)
    assert local[0].face == 0 and local[0].model.startswith("faces.keras@")  # the astronaut's face was found
    assert_same_rows(records(settings, paths, ray_backend("local")), local)


def test_a_killed_actor_is_restarted_and_no_row_is_lost(local_ray, tmp_path: Path, tiny_model: Path):
    paths = [str(write_image(tmp_path / f"{i:03d}.png", i)) for i in range(60)]
    settings = ScanSettings(model=tiny_model, batch_size=2, evidence=False)
    local = records(settings, paths)
    got = []
    with ScanJob(settings, backend=ray_backend("local")) as job:
        for number, files in enumerate(job.run(paths)):
            got += [r for f in files for r in f.records]
            if number == 0:
                killed = actor_processes()
                assert killed, "no scoring actor found"
                for pid in killed:
                    os.kill(pid, signal.SIGKILL)
    assert_same_rows(got, local)


def test_interrupting_the_driver_stops_the_cluster_work(local_ray, tmp_path: Path, tiny_model: Path):
    paths = [str(write_image(tmp_path / f"{i:03d}.png", i)) for i in range(200)]
    threads = set(threading.enumerate())
    with ScanJob(ScanSettings(model=tiny_model, batch_size=2), backend=ray_backend("local")) as job:
        batches = job.run(paths)
        next(batches)
        assert actor_processes()
        with pytest.raises(KeyboardInterrupt):
            batches.throw(KeyboardInterrupt)
    deadline = time.monotonic() + 30
    while actor_processes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not actor_processes()
    assert not set(threading.enumerate()) - threads, "Ray Data still runs in this process"


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGINT, ExitCode.INTERRUPTED), (signal.SIGTERM, ExitCode.TERMINATED)]
)
def test_a_signal_mid_ray_scan_keeps_the_rows_and_resume_finishes(tmp_path: Path, tiny_model: Path, sig, code):
    folder = many_images(tmp_path / "many", 300)
    out = tmp_path / "r.csv"
    process = start_scan(folder, "--model", tiny_model, "--out", out, "--batch-size", "2", "--ray", "local")
    err = interrupt_mid_scan(process, sig, tmp_path, "r.csv", timeout=180)
    assert process.returncode == code, err
    assert "Traceback" not in err and "stopped after" in err
    kept = out.read_text().splitlines()[1:]
    assert 4 <= len(kept) < 300
    again = start_scan(folder, "--model", tiny_model, "--out", out, "--resume", "-q", "--ray", "local")
    assert again.wait(timeout=300) == ExitCode.OK, again.stderr.read()
    rows = out.read_text().splitlines()[1:]
    assert len(rows) == 300 and rows[: len(kept)] == kept


@pytest.mark.parametrize("delay", [1.0, 2.5])
def test_ctrl_c_while_ray_starts_stops_the_scan_cleanly(tmp_path: Path, tiny_model: Path, delay: float):
    """Ctrl-C in the middle of ray.init ended in a segmentation fault (exit 139) in 4 of 13 runs: now it waits
    for Ray's start-up to finish, then stops as any interrupted scan does."""
    folder = many_images(tmp_path / "many", 300)
    process = start_scan(folder, "--model", tiny_model, "--out", tmp_path / "r.csv", "--ray", "local", "-q")
    time.sleep(delay)  # Ray takes several seconds to start here: the signal lands inside its start-up
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=180)
    assert process.returncode == ExitCode.INTERRUPTED, err
    assert "Traceback" not in err and "Segmentation" not in err


@pytest.mark.parametrize("late_start", [False, True])
def test_a_stalled_cluster_is_an_error_not_a_hang(
    local_ray, tmp_path: Path, tiny_model: Path, monkeypatch, late_start: bool
):
    """Actors asking for a GPU this cluster does not have are never placed: the scan must fail, not wait forever.

    late_start: on a busy machine Ray Data may start its execution only after the scan gave up waiting.
    """
    monkeypatch.setattr(ActorPlan, "for_cluster", classmethod(lambda cls, cpus, gpus: cls(1, 1.0, 1.0)))
    if late_start:
        from ray.data._internal.execution.streaming_executor import StreamingExecutor

        execute = StreamingExecutor.execute

        def late(self, *args, **kwargs):
            time.sleep(8)
            return execute(self, *args, **kwargs)

        monkeypatch.setattr(StreamingExecutor, "execute", late)
    paths = [str(write_image(tmp_path / "a.png"))]
    threads = set(threading.enumerate())
    started = time.monotonic()
    with pytest.raises(ClusterError, match="no result for 5 s"):
        records(ScanSettings(model=tiny_model), paths, ray_backend("local", stall_seconds=5))
    assert time.monotonic() - started < 60
    settle = time.monotonic() + 15  # on a busy machine Ray Data's prefetch thread may take a moment to end
    while set(threading.enumerate()) - threads and time.monotonic() < settle:
        time.sleep(0.2)
    assert not set(threading.enumerate()) - threads, "Ray Data still waits for the actors in this process"


def test_actors_leave_cpus_for_decoding():
    assert ActorPlan.for_cluster(cpus=2, gpus=0) == ActorPlan(1, 1.0, 0.0)
    assert ActorPlan.for_cluster(cpus=1, gpus=0) == ActorPlan(1, 1.0, 0.0)
    assert ActorPlan.for_cluster(cpus=64, gpus=0).actors == 32
    assert ActorPlan.for_cluster(cpus=16, gpus=2) == ActorPlan(2, 1.0, 1.0)


def test_without_ray_the_option_is_a_one_line_usage_error(cli, photos: Path, tiny_model: Path, monkeypatch):
    import deepscan.ray_scorer

    real_find_spec = deepscan.ray_scorer.importlib.util.find_spec
    monkeypatch.setattr(
        deepscan.ray_scorer.importlib.util,
        "find_spec",
        lambda name, *a: None if name.split(".")[0] == "ray" else real_find_spec(name, *a),
    )
    code, out, err = cli("scan", photos, "--model", tiny_model, "--ray", "local")
    assert code == ExitCode.USAGE and out == ""
    assert err.strip().splitlines() == ["deepscan: error: --ray needs Ray: pip install 'deepscan-audit[ray]'"]


def test_the_command_on_a_head_joined_by_address(photos: Path, tiny_model: Path, tmp_path: Path):
    """`ray start --head`, then `deepscan scan --ray HOST:PORT` in another process: the local scan's report."""
    port = free_port()
    # Token authentication, as Ray asks of a driver joining by address (the token: ~/.ray/auth_token).
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token"}
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # Ray's socket paths must stay short
    ray_cli = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--block", f"--temp-dir={temp}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        scan = [sys.executable, "-m", "deepscan", "scan", str(photos), "--model", str(tiny_model), "-q", "-f", "jsonl"]
        local = subprocess.run(scan, env=env, capture_output=True, text=True, timeout=120)
        wait_for_port(port, seconds=60)  # the head takes a few seconds to listen
        joined = subprocess.run(
            [*scan, "--ray", f"127.0.0.1:{port}"], env=env, capture_output=True, text=True, timeout=300
        )
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=60)
        shutil.rmtree(temp, ignore_errors=True)
    assert local.returncode == joined.returncode == ExitCode.UNREADABLE, joined.stderr  # the photos' broken file
    local_rows = [json.loads(line) for line in local.stdout.splitlines()]
    ray_rows = [json.loads(line) for line in joined.stdout.splitlines()]
    assert [r["path"] for r in ray_rows] == [r["path"] for r in local_rows]
    for remote, row in zip(ray_rows, local_rows, strict=True):
        assert (remote["label"], remote["error"]) == (row["label"], row["error"])
        assert (remote["score"] is None) == (row["score"] is None)
        if row["score"] is not None:
            assert remote["score"] == pytest.approx(row["score"], abs=1e-4)
    assert "Traceback" not in joined.stderr and " E " not in joined.stderr


def actor_processes() -> list[int]:
    """PIDs of Ray Data's scoring actors on this machine (their process title names the UDF)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"ScoringActor" in title and b"MapWorker" in title:
                found.append(int(entry.name))
    return found


def wait_for_port(port: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"nothing listens on port {port} after {seconds} s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_address_where_nothing_answers_is_one_line_at_once(photos: Path, tiny_model: Path, tmp_path: Path):
    """--ray 127.0.0.1:1 made Ray retry for minutes, deaf to SIGTERM, leaving a .part file: now one line, no file."""
    out = tmp_path / "r.csv"
    scan = [sys.executable, "-m", "deepscan", "scan", str(photos), "--model", str(tiny_model), "-o", str(out)]
    result = subprocess.run([*scan, "--ray", f"127.0.0.1:{free_port()}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == ExitCode.USAGE and "nothing answers there" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and [p.name for p in tmp_path.iterdir()] == ["photos"]
    typo = subprocess.run([*scan, "--ray", "localhost"], capture_output=True, text=True, timeout=120)
    assert typo.returncode == ExitCode.USAGE and "HOST:PORT" in typo.stderr
