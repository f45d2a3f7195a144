"""deepscan train: fit a model on DATA_DIR and save it with its threshold and recipe."""

from __future__ import annotations

import importlib.util
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from deepscan.commands.options import (
    DATA,
    MODEL,
    GroupPatternOption,
    TargetFprOption,
    TrainedOnOption,
    data_dirs_argument,
    print_validation,
    progress_bar,
)
from deepscan.errors import DeepscanError, ExitCode, OutputError
from deepscan.evaluate import GROUP_PATTERN
from deepscan.model import ARCHITECTURES, DEFAULT_FACE_MARGIN, list_architectures
from deepscan.report import check_destination

Architecture = Enum("Architecture", {name: name for name in list_architectures()}, type=str)
ARCH_HELP = "; ".join(f"{entry.name}: {entry.summary}" for entry in ARCHITECTURES.values())

LOOP, AUGMENT = "Training loop", "Augmentation"


class Schedule(str, Enum):
    cosine = "cosine"
    plateau = "plateau"


def train_command(
    data_dirs: Annotated[
        list[Path],
        data_dirs_argument(
            "Folders with real/ and fake/, or with train/ and val/ each holding real/ and fake/; "
            "several are mixed in equal parts each epoch (see --source-weight)."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Model file to write (.keras).", rich_help_panel=MODEL)],
    arch: Annotated[
        Architecture, typer.Option(help=f"Network: {ARCH_HELP}.", rich_help_panel=MODEL)
    ] = Architecture.compact,  # type: ignore[attr-defined]
    image_size: Annotated[
        int | None,
        typer.Option(min=16, help="Input size in pixels (default: the architecture's).", rich_help_panel=MODEL),
    ] = None,
    crop: Annotated[
        int | None,
        typer.Option(
            min=8,
            help="Train on random crops of this size, score whole images (fully convolutional architectures).",
            rich_help_panel=MODEL,
        ),
    ] = None,
    faces: Annotated[
        bool,
        typer.Option(
            "--faces",
            help="Train on face crops found as 'scan --faces' finds them (detected once, kept in OUT's stem "
            "+ '.faces.json'); images without a face are used whole.",
            rich_help_panel=DATA,
        ),
    ] = False,
    face_margin: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="With --faces: the margin around each face, as a fraction of its size (stored in the model, "
            "which scan --faces then crops with).",
            rich_help_panel=DATA,
        ),
    ] = DEFAULT_FACE_MARGIN,
    target_fpr: TargetFprOption = None,
    val_split: Annotated[
        float, typer.Option(help="Validation fraction when DATA_DIR has no train/ and val/.", rich_help_panel=DATA)
    ] = 0.15,
    group_pattern: GroupPatternOption = GROUP_PATTERN,
    source_weight: Annotated[
        list[float] | None,
        typer.Option(
            min=0.0,
            metavar="WEIGHT",
            help="Each DATA_DIR's weight in every epoch's draws, once per DATA_DIR in their order "
            "(--source-weight 1 --source-weight 2: a third from the first); default: equal.",
            rich_help_panel=DATA,
        ),
    ] = None,
    trained_on: TrainedOnOption = "",
    init_from: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Start from this deepscan model's weights (same architecture and size): fine-tune it.",
            rich_help_panel=MODEL,
        ),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(help="Cache decoded images in this file instead of memory (large sets).", rich_help_panel=DATA),
    ] = None,
    epochs: Annotated[
        int,
        typer.Option(
            min=0,
            help="Epochs to run (at most, with --schedule plateau); 0 with --init-from: only calibrate that model "
            "and choose its threshold on these sources' validation sets.",
            rich_help_panel=LOOP,
        ),
    ] = 24,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per training step.", rich_help_panel=LOOP)] = 32,
    lr: Annotated[
        float, typer.Option(min=0.0, help="Adam learning rate (the start of the schedule).", rich_help_panel=LOOP)
    ] = 1e-3,
    schedule: Annotated[
        Schedule,
        typer.Option(
            help="cosine: decay the rate to 0 over all epochs and keep the last weights; plateau: halve it when "
            "val_loss stalls, stop after --patience epochs without progress, keep the best weights.",
            rich_help_panel=LOOP,
        ),
    ] = Schedule.cosine,
    patience: Annotated[
        int,
        typer.Option(min=1, help="Epochs without val_loss progress before stopping (plateau).", rich_help_panel=LOOP),
    ] = 10,
    seed: Annotated[
        int, typer.Option(help="Random seed for the split, shuffling and weights.", rich_help_panel=LOOP)
    ] = 1234,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted run of the same --out.", rich_help_panel=LOOP)
    ] = False,
    tensorboard: Annotated[
        Path | None, typer.Option(help="Write TensorBoard logs to this folder.", rich_help_panel=LOOP)
    ] = None,
    rotation: Annotated[
        float, typer.Option(min=0.0, help="Random rotation, fraction of a turn (0: off).", rich_help_panel=AUGMENT)
    ] = 0.0,
    shift: Annotated[
        float, typer.Option(min=0.0, help="Random shift, fraction of the size (0: off).", rich_help_panel=AUGMENT)
    ] = 0.0,
    source_shift: Annotated[
        list[float] | None,
        typer.Option(
            min=0.0,
            metavar="FRACTION",
            help="Each DATA_DIR's own random shift, once per DATA_DIR in their order, in place of --shift "
            "(--source-shift 0 --source-shift 0.08: aligned faces first, video frames second).",
            rich_help_panel=AUGMENT,
        ),
    ] = None,
    flip: Annotated[
        bool, typer.Option("--flip/--no-flip", help="Random horizontal flips.", rich_help_panel=AUGMENT)
    ] = True,
    brightness: Annotated[
        float,
        typer.Option(
            min=0.0, help="Random brightness change, fraction of the range (0: off).", rich_help_panel=AUGMENT
        ),
    ] = 0.2,
    jpeg: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Probability of JPEG re-compression, quality 30-100 (0: off).",
            rich_help_panel=AUGMENT,
        ),
    ] = 0.3,
    blur: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Probability of Gaussian blur, sigma 0-3 (0: off).", rich_help_panel=AUGMENT
        ),
    ] = 0.3,
) -> int:
    """Train a real/fake model; pick its threshold on the validation set; save it for 'deepscan scan --model'.

    The defaults are the packaged model's recipe. Beside OUT: OUT's stem + '.history.csv'
    (metrics and learning rate per epoch) and, until training ends, + '.training/'
    (weights so far, and the backup --resume continues from). Ctrl-C stops cleanly and
    saves the model so far (the best one with --schedule plateau).

    Example: deepscan train ../shared/data ../shared/faceswap --out m.keras --target-fpr 0.1
    """
    if out.suffix != ".keras":
        raise OutputError(f"--out must name a .keras file (deepscan's model format), not {out.name}")
    check_destination(out)
    if tensorboard is not None and importlib.util.find_spec("tensorboard") is None:
        raise DeepscanError("--tensorboard needs TensorBoard: pip install 'deepscan-audit[tensorboard]'")
    from deepscan.train import Augmentation, TrainConfig, train

    console = Console(stderr=True, highlight=False)
    config = TrainConfig(
        arch=arch.value,
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=lr,
        schedule=schedule.value,
        val_split=val_split,
        group_pattern=group_pattern,
        trained_on=trained_on,
        source_weights=tuple(source_weight or ()),
        source_shifts=tuple(source_shift or ()),
        patience=patience,
        seed=seed,
        target_fpr=tuple(target_fpr or ()),
        crop=crop,
        faces=faces,
        face_margin=face_margin,
        augmentation=Augmentation(rotation, shift, flip, brightness, jpeg, blur),
        cache_file=str(cache) if cache else "",
        resume=resume,
        tensorboard=tensorboard,
        init_from=str(init_from) if init_from else "",
    )
    progress = progress_bar(console)
    task = progress.add_task("starting", total=None)
    with progress:
        result = train(
            data_dirs,
            out,
            config,
            log=lambda line: console.print(line, markup=False, soft_wrap=True),
            status=lambda what, done, total: progress.update(task, description=what, completed=done, total=total),
        )
    print_validation(
        console, f"saved {result.model_path} after {result.epochs_run} epochs", result.evaluation, result.sources
    )
    return ExitCode.INTERRUPTED if result.interrupted else ExitCode.OK
