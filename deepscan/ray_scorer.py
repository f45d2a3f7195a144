"""Scale-out: the scorer seam on a Ray cluster, through Ray Data.

The driver (the machine running ``deepscan scan``) keeps discovery, the
cache, resume, evidence and the writers; :class:`RayScorer` hands the files
left to score to Ray Data a window at a time: tasks decode them with the
local pipeline's own functions, a pool of actors (``ActorPoolStrategy``)
loads the model once per actor and scores them, and the rows stream back in
input order. Windows bound what the driver holds however many files there
are; ``ray`` is imported only here, and only when ``--ray`` is given.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import queue
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deepscan import interrupts
from deepscan.errors import DeepscanError
from deepscan.job import ScanSettings, local_scorer
from deepscan.pipeline import Source
from deepscan.record import Record
from deepscan.scorers import Decoder, ScanModel

log = logging.getLogger("deepscan")

MISSING_RAY = "--ray needs Ray: pip install 'deepscan-audit[ray]'"
WINDOW_FILES = 20_000  # files handed to Ray Data at once: the actor pool starts once per window
WINDOW_BYTES = 256 << 20  # file bytes read by the driver (to hash them for the cache) carried in one window
ACTOR_MEMORY = 1 << 30  # reserved per scoring actor: TensorFlow, the model(s), a few batches
STALL_SECONDS = 300.0  # no row for this long: the scan stops with an error instead of hanging
STOP_SECONDS = 30.0  # how long a stopped scan waits for Ray Data's threads to wind down


class ClusterError(DeepscanError):
    """The Ray cluster cannot be joined, or stopped giving results."""


def check_ray() -> None:
    """Raise the usage error for a missing Ray now, before any work starts."""
    if importlib.util.find_spec("ray") is None or importlib.util.find_spec("ray.data") is None:
        raise DeepscanError(MISSING_RAY)


@dataclass(frozen=True)
class ActorPlan:
    """How the scoring actors use a cluster: how many, and what each one holds."""

    actors: int
    cpus_per_actor: float
    gpus_per_actor: float

    @classmethod
    def for_cluster(cls, cpus: float, gpus: float) -> ActorPlan:
        """One actor per GPU; without GPUs, one single-threaded actor per two CPUs.

        Either way at least half the CPUs stay free for the read and decode
        tasks: actors that hold every CPU starve the tasks that feed them,
        and Ray Data then waits forever instead of failing.
        """
        if gpus >= 1:
            return cls(int(gpus), 1.0, 1.0)
        return cls(max(1, int(cpus) // 2), 1.0, 0.0)

    def describe(self) -> str:
        kind = "GPU" if self.gpus_per_actor else "CPU"
        return f"{self.actors} {kind} actor{'s' * (self.actors != 1)}"


@dataclass
class RayScorer:
    """Whole images or faces, scored by Ray Data on a cluster: the same records as the local scorers."""

    address: str  # "local": a Ray started in this process; "auto": RAY_ADDRESS or a running cluster; host:port
    settings: ScanSettings
    scan_models: list[ScanModel]
    stall_seconds: float = STALL_SECONDS
    window_files: int = WINDOW_FILES
    _device: str | None = field(default=None, init=False)

    @property
    def cache_key(self) -> str:
        """The local scorer's: the scores are the same, so cached ones serve both."""
        return local_scorer(self.settings, self.scan_models).cache_key

    @property
    def device(self) -> str | None:
        return self._device

    def models(self) -> list[ScanModel]:
        return self.scan_models

    def score(self, sources: Iterable[Source]) -> Iterator[list[Record]]:
        ray = import_ray()
        started_here = _connect(ray, self.address)
        try:
            resources = ray.cluster_resources()
            plan = ActorPlan.for_cluster(resources.get("CPU", 0), resources.get("GPU", 0))
            self._device = f"Ray at {self.address}: {plan.describe()}"
            # Stored once in the object store; each actor fetches them (a worker may not see the driver's disk).
            model_files = [(model.path.name, ray.put(model.path.read_bytes())) for model in self.scan_models]
            for window in _windows(sources, self.window_files, WINDOW_BYTES):
                dataset = self._dataset(ray, window, plan, model_files)
                for batch in _watched(dataset, self.settings.batch_size, self.stall_seconds):
                    yield [_record(row) for text in batch["records"] for row in json.loads(text)]
        finally:
            if started_here:
                ray.shutdown()  # also ends this driver's actors and tasks on the cluster

    def _dataset(self, ray: Any, window: list[Source], plan: ActorPlan, model_files: list[tuple[str, Any]]) -> Any:
        items = [{"path": s.path, "data": s.data or b"", "has_data": s.data is not None} for s in window]
        decoder = local_scorer(self.settings, self.scan_models).decoder()  # the local first stage, in tasks
        batch_size = self.settings.batch_size
        return (
            ray.data.from_items(items)
            .map_batches(_decoded, fn_kwargs={"decoder": decoder}, batch_size=batch_size, num_cpus=1)
            .map_batches(
                ScoringActor,
                fn_constructor_kwargs={
                    "model_files": model_files,
                    "settings": self.settings,
                    "threads": int(plan.cpus_per_actor),
                },
                compute=ray.data.ActorPoolStrategy(min_size=1, max_size=plan.actors),
                batch_size=batch_size,
                num_cpus=plan.cpus_per_actor,
                num_gpus=plan.gpus_per_actor,
                memory=ACTOR_MEMORY,  # also keeps Ray Data from fusing the decode tasks into the actors
            )
        )


def ray_backend(
    address: str, stall_seconds: float = STALL_SECONDS
) -> Callable[[ScanSettings, list[ScanModel]], RayScorer]:
    """The back end for ``ScanJob(settings, backend=...)``: the scan's scorer on the Ray cluster at ``address``.

    A host:port address is probed first, within ``stall_seconds``: Ray itself retries an address
    where nothing answers for minutes, deaf to SIGTERM, and leaves a half-written report behind.
    """
    check_ray()
    probe(address, min(stall_seconds, PROBE_SECONDS))

    def build(settings: ScanSettings, models: list[ScanModel]) -> RayScorer:
        if settings.save_crops is not None:
            raise DeepscanError("--save-crops writes on the machine that scores: not with --ray")
        return RayScorer(address, settings, models, stall_seconds)

    return build


class ScoringActor:
    """A Ray Data actor: the model(s) loaded once, then decoded batches in, each file's records (JSON) out."""

    def __init__(self, model_files: list[tuple[str, Any]], settings: ScanSettings, threads: int) -> None:
        import ray

        from deepscan.runtime import tensorflow

        tf = tensorflow()
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
        folder = Path(tempfile.mkdtemp(prefix="deepscan-models-"))
        models = []
        for index, (name, stored) in enumerate(model_files):
            path = folder / str(index) / name  # the driver's file name: the records carry the same identity
            path.parent.mkdir()
            path.write_bytes(ray.get(stored))
            models.append(ScanModel(path, "ray", explicit_margin=settings.face_margin))  # as the driver's resolve it
        self.scorer = local_scorer(settings, models)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        chunk = [(str(path), decoded) for path, decoded in zip(batch["path"], batch["decoded"], strict=True)]
        records = self.scorer.score_decoded(chunk)  # the local second stage
        by_file: dict[str, list[dict]] = {}
        for record in records:
            by_file.setdefault(record.path, []).append(_plain(record))
        return {"records": np.array([json.dumps(by_file[str(path)]) for path in batch["path"]], dtype=object)}


def _plain(record: Record) -> dict[str, Any]:
    return {
        "path": record.path,
        "score": record.score,
        "error": record.error,
        "model": record.model,
        "face": record.face,
        "box": None if record.box is None else list(record.box),
        "face_confidence": record.face_confidence,
    }


def _record(row: dict[str, Any]) -> Record:
    box = row.pop("box")
    return Record(**row, box=None if box is None else tuple(box))


def _decoded(batch: dict[str, np.ndarray], decoder: Decoder) -> dict[str, np.ndarray]:
    """Read task: each file through the local scorer's first stage (pixels, a working image, or an error text)."""
    decoded = np.empty(len(batch["path"]), dtype=object)  # filled one by one: numpy would stack equal-shaped arrays
    for index, (path, data, has_data) in enumerate(zip(batch["path"], batch["data"], batch["has_data"], strict=True)):
        decoded[index] = decoder(str(path), bytes(data) if has_data else None)
    return {"path": batch["path"], "decoded": decoded}


def _windows(sources: Iterable[Source], max_files: int, max_bytes: int) -> Iterator[list[Source]]:
    window: list[Source] = []
    carried = 0
    for source in sources:
        window.append(source)
        carried += len(source.data or b"")
        if len(window) >= max_files or carried >= max_bytes:
            yield window
            window, carried = [], 0
    if window:
        yield window


def _watched(dataset: Any, batch_size: int, stall_seconds: float) -> Iterator[Any]:
    """The dataset's batches, or a ClusterError when none arrives for ``stall_seconds``.

    Ray Data is consumed in a helper thread so that the wait can time out,
    and so that Ctrl-C reaches the main thread at once. However it ends, the
    dataset's execution is stopped and the helper thread waited for: a thread
    still inside Ray Data when Ray shuts down can end the whole process.
    """
    batches = dataset.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=1)
    handoff: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=2)
    done = threading.Event()

    def offer(item: tuple[str, Any]) -> None:
        """Hand an item to the main thread; once the scan has stopped, drop it."""
        while not done.is_set():
            try:
                handoff.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def pull() -> None:
        try:
            # Read to the end even after a stop (the stopped executor ends the iteration soon): only
            # an iteration that ends stops Ray Data's prefetch thread.
            for batch in batches:
                offer(("batch", batch))
            offer(("end", None))
        except BaseException as err:  # handed to the main thread, which raises it
            offer(("error", err))

    puller = threading.Thread(target=pull, name="deepscan-ray-results", daemon=True)
    puller.start()
    try:
        while True:
            try:
                kind, value = handoff.get(timeout=stall_seconds)
            except queue.Empty:
                raise ClusterError(
                    f"the Ray cluster returned no result for {stall_seconds:.0f} s; check 'ray status' "
                    "(are the actors waiting for CPUs or GPUs the cluster does not have?)"
                ) from None
            if kind == "end":
                return
            if kind == "error":
                raise ClusterError(f"the Ray scan failed: {_first_line(value)}") from value
            yield value
    finally:
        done.set()
        _stop(dataset, puller)


def _stop(dataset: Any, reader: threading.Thread) -> None:
    """End a dataset's execution now (a stall, an error, Ctrl-C), even on a Ray this scan did not start,
    and wait for the thread reading it.

    Ray Data has no public call for it, and the dataset only records its
    executor once a first block is out (never, when the cluster stalls), so
    the executor is found by its thread, which Ray Data names after the
    dataset; on a busy machine it may not have started yet when the scan
    stops, so it is looked for until the reader ends. Left running, it would
    wait for actors until Ray shuts down.
    """
    deadline = time.monotonic() + STOP_SECONDS
    while reader.is_alive() and time.monotonic() < deadline:
        name = f"StreamingExecutor-{dataset.get_dataset_id()}"  # the id changes when an execution starts
        for thread in threading.enumerate():
            if thread.name == name and hasattr(thread, "shutdown"):
                thread.shutdown(force=True)  # returns at once if not started yet, or already stopped
        reader.join(timeout=0.5)
    if reader.is_alive():
        log.info("Ray Data was still returning results %.0f s after the scan stopped", STOP_SECONDS)


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def import_ray() -> Any:
    """Import Ray (and Ray Data) with its automatic ``ray.init`` off, unless the caller chose otherwise.

    deepscan joins or starts Ray explicitly. Left on, Ray's auto-init lets a
    Ray Data thread still winding down after a stopped scan start a whole new
    local Ray inside this process once the scan has shut its own down. Set
    before Ray is first imported; a program that imported Ray itself keeps
    its own setting.
    """
    os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")
    try:
        import ray
        import ray.data
    except ImportError:
        raise DeepscanError(MISSING_RAY) from None
    return ray


PROBE_SECONDS = 10.0


def probe(address: str, timeout: float) -> None:
    """ClusterError now if nothing accepts a connection at a host:port address ('local' and 'auto' are not probed)."""
    if address in ("local", "auto"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"--ray {address}: give 'local', 'auto' or HOST:PORT")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as err:
        reason = err.strerror or (f"no answer within {timeout:g} s" if isinstance(err, TimeoutError) else str(err))
        raise ClusterError(f"cannot join the Ray cluster at {address}: nothing answers there ({reason})") from None


def _connect(ray: Any, address: str) -> bool:
    """Join or start Ray; True when this call started it (so the scan shuts it down)."""
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True  # rows come back in input order
    context.enable_progress_bars = False  # deepscan draws its own
    context.print_on_execution_start = False
    # Ray's own notes, warnings and errors only with -v: the scan reports what matters itself (a failed
    # batch as a ClusterError), and a stopped scan's Ray Data threads log a traceback as they wind down.
    verbose = log.isEnabledFor(logging.INFO)
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.WARNING if verbose else logging.CRITICAL)
    if not verbose:  # Ray's C++ core worker logs to stderr too: an error line for every actor Ray Data starts
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # (ray-project/ray#53727)
    if ray.is_initialized():
        return False
    with interrupts.deferred():  # a Ctrl-C in the middle of ray.init crashed the process at exit
        on_sigterm = signal.getsignal(signal.SIGTERM)
        try:
            ray.init(
                address=None if address == "local" else address,
                include_dashboard=False,
                log_to_driver=False,
                logging_level=logging.WARNING,
                configure_logging=False,
            )
            if threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, on_sigterm)  # ray.init replaces it with sys.exit; the scan keeps its rows
        except (ConnectionError, RuntimeError, ValueError) as err:
            hint = (
                "" if address in ("local", "auto") or os.environ.get("RAY_AUTH_MODE")
                else " (a cluster with token authentication needs RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN "
                "or ~/.ray/auth_token)"
            )  # fmt: skip
            raise ClusterError(f"cannot join the Ray cluster at {address}: {_first_line(err)}{hint}") from None
    return True
