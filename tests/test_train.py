"""Train tiny models for a few epochs on a tiny generated set, then use them as a user would."""

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepscan.errors import DataError, ExitCode
from deepscan.model import read_spec
from deepscan.train import Augmentation, EpochLine, TrainConfig, split_dataset, train

SIZE = 32
FAST = Augmentation(rotation=0, shift=0, jpeg=0.5, blur=0.5)  # still exercises the custom layers


def make_dataset(root: Path, per_class: int, seed: int = 0) -> Path:
    """Smooth grey images are 'real', noisy ones 'fake': separable by a small CNN."""
    rng = np.random.default_rng(seed)
    for label in ("real", "fake"):
        for i in range(per_class):
            if label == "real":
                pixels = np.full((SIZE, SIZE, 3), rng.integers(60, 200), np.uint8)
            else:
                pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            (root / label).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / label / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_dataset(tmp_path_factory.mktemp("data"), per_class=20)
    (root / "real" / "corrupt.jpg").write_bytes(b"\xff\xd8 not really")
    return root


@pytest.fixture(scope="module")
def trained(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "m.keras"
    config = TrainConfig(arch="compact", image_size=SIZE, epochs=2, batch_size=8, learning_rate=1e-2, augmentation=FAST)
    config.tensorboard = out.with_name("tensorboard")
    train([data], out, config, log=lambda line: None)
    return out


def test_split_is_stratified_and_seeded(data: Path):
    first, again = split_dataset(data, 0.25, seed=7), split_dataset(data, 0.25, seed=7)
    assert first == again
    assert first.counts()["val"] == {"real": 5, "fake": 5}
    assert not set(first.val_paths) & set(first.train_paths)
    assert split_dataset(data, 0.25, seed=8).val_paths != first.val_paths


def test_trained_model_records_its_recipe(trained: Path, data: Path):
    spec = read_spec(trained)
    assert spec.arch == "compact" and spec.image_size == SIZE
    assert spec.training["epochs_run"] == 2
    assert spec.training["unreadable_skipped"] == 1
    assert spec.training["trained_on"] == data.name  # by default, the sources' names
    counts = spec.training["data"][data.name]
    assert counts["train"]["real"] + counts["val"]["real"] == 20  # the corrupt file is not counted
    assert 0 <= spec.training["val_metrics"]["roc_auc"] <= 1
    assert trained.with_name("m.history.csv").exists()
    assert not trained.with_name("m.training").exists()  # work folder removed after a clean finish
    assert list(trained.with_name("tensorboard").rglob("events.out.tfevents.*"))


def test_scan_uses_the_trained_model_and_its_threshold(cli, trained: Path, data: Path):
    threshold = read_spec(trained).threshold
    code, out, _ = cli("scan", data, "--model", trained, "-q")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert code == ExitCode.UNREADABLE  # the corrupt file
    for row in rows:
        if row["score"] and abs(float(row["score"]) - threshold) > 1e-6:  # scores are printed rounded
            assert row["label"] == ("fake" if float(row["score"]) >= threshold else "real")
    _, explicit, _ = cli("scan", data, "--model", trained, "-q", "--threshold", str(threshold))
    assert explicit == out


def test_info_shows_the_recipe(cli, trained: Path):
    code, out, _ = cli("info", trained)
    assert code == 0 and "compact" in out and "training: epochs run" in out and "roc_auc=" in out
    assert "│ trained on " in out and "training: val sources" in out
    assert out.count("│ input ") == 1  # the recipe's "input" is shown as a training row, not a second input
    assert "device" in out and ("CPU" in out or "GPU" in out)


def test_evaluate_figures_match_a_confusion_matrix_made_by_hand(cli, trained: Path, data: Path):
    _, scanned, _ = cli("scan", data, "--model", trained, "-q", "--format", "jsonl")
    rows = [json.loads(line) for line in scanned.splitlines() if json.loads(line)["score"] is not None]
    truth = np.array([Path(r["path"]).parent.name == "fake" for r in rows])
    predicted = np.array([r["label"] == "fake" for r in rows])
    code, out, _ = cli("evaluate", data, "--model", trained, "--format", "json")
    card = json.loads(out)
    assert code == 0
    # One folder is one source: its own figures, the same as the pooled ones, where a script always finds them.
    assert list(card["sources"]) == [str(data)] and card["sources"][str(data)]["roc_auc"] == card["roc_auc"]
    assert card["images"] == len(rows) and card["unreadable"] == 1
    assert card["confusion"]["fake"]["fake"] == int(np.sum(truth & predicted))
    assert card["confusion"]["real"]["fake"] == int(np.sum(~truth & predicted))
    assert card["accuracy"] == pytest.approx(np.mean(truth == predicted))
    code, out, _ = cli("evaluate", data, "--model", trained, "--format", "json", "--threshold", "0.5", "--errors", "3")
    wrong = json.loads(out)["misclassified"]
    by_path = {r["path"]: r["score"] for r in rows}
    assert code == 0 and len(wrong) == min(3, int(np.sum(truth != np.array([by_path[r["path"]] >= 0.5 for r in rows]))))
    for item in wrong:
        assert (by_path[item["path"]] >= 0.5) != (item["class"] == "fake")  # labelled the other way
    margins = [abs(item["score"] - 0.5) for item in wrong]
    assert margins == sorted(margins, reverse=True)


def history(out: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(out.with_name(f"{out.stem}.history.csv").open()))


def test_plateau_schedule_stops_at_the_first_worse_epoch(data: Path, tmp_path: Path):
    out = tmp_path / "p.keras"
    config = TrainConfig(
        arch="reference", image_size=SIZE, epochs=15, batch_size=8, learning_rate=1e-2, schedule="plateau", patience=1
    )
    config.augmentation = FAST
    result = train([data], out, config, log=lambda line: None)
    rows = history(out)
    losses = [float(row["val_loss"]) for row in rows]
    assert result.epochs_run == len(rows) < 15  # noisy tiny data: val_loss gets worse within a few epochs
    assert int(np.argmin(losses)) == len(losses) - 2  # patience 1: it stopped one epoch after the best


def test_training_reports_what_it_does_batch_by_batch(data: Path, tmp_path: Path):
    """What the progress bar of `deepscan train` shows: the stages, then every batch of every epoch."""
    heard: list[tuple[str, int, int | None]] = []
    config = TrainConfig(arch="reference", image_size=SIZE, epochs=2, batch_size=8, augmentation=FAST)
    train([data], tmp_path / "s.keras", config, log=lambda line: None, status=lambda *event: heard.append(event))
    stages = list(dict.fromkeys(what for what, _, _ in heard))
    assert stages[:2] == ["reading the sources", "reading the images"] and stages[-1].startswith("calibrating")
    steps = next(total for what, _, total in heard if what == "epoch 1/2")
    assert steps >= 3  # about 32 training images in batches of 8
    for epoch in (1, 2):
        batches = [done for what, done, _ in heard if what == f"epoch {epoch}/2"]
        assert batches == list(range(0, steps + 1)), batches
    assert "epoch 2/2: validating" in stages


def test_an_unknown_schedule_is_refused_before_anything_is_written(data: Path, tmp_path: Path):
    with pytest.raises(DataError, match="unknown schedule 'linear'"):
        train([data], tmp_path / "m.keras", TrainConfig(schedule="linear"), log=lambda line: None)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_training_keeps_a_model_and_resume_continues_the_schedule(data: Path, tmp_path: Path, monkeypatch):
    out = tmp_path / "r.keras"
    config = TrainConfig(arch="reference", image_size=SIZE, epochs=4, batch_size=8, augmentation=FAST)
    lines: list[str] = []
    original = EpochLine.on_epoch_end

    def stop_after_second_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(EpochLine, "on_epoch_end", stop_after_second_epoch)
    first = train([data], out, config, log=lines.append)
    assert first.interrupted and first.epochs_run == 2
    assert read_spec(out).training["interrupted"] is True
    assert out.with_name("r.training").is_dir()

    monkeypatch.setattr(EpochLine, "on_epoch_end", original)
    lines.clear()
    config.resume = True
    second = train([data], out, config, log=lines.append)
    assert not second.interrupted
    assert [line.split(":")[0] for line in lines if line.startswith("epoch")] == ["epoch 3", "epoch 4"]
    assert second.epochs_run == 4
    # The cosine schedule went on from where it stopped, down to 0 at the last epoch.
    rates = [float(row["learning_rate"]) for row in history(out)]
    expected = [config.learning_rate * (1 + math.cos(math.pi * epoch / 4)) / 2 for epoch in (1, 2, 3, 4)]
    assert rates == pytest.approx(expected, rel=1e-4, abs=1e-9)


def test_evaluate_robustness_table_and_plot(cli, trained: Path, data: Path, tmp_path: Path):
    plot = tmp_path / "card.png"
    code, out, _ = cli("evaluate", data, "--model", trained, "--robustness", "--plot", plot, "--format", "json")
    card = json.loads(out)
    assert code == 0
    levels = [(row["perturbation"], row["level"]) for row in card["robustness"]]
    assert levels == [
        ("jpeg", 95),
        ("jpeg", 75),
        ("jpeg", 50),
        ("jpeg", 30),
        ("blur", 0),
        ("blur", 1),
        ("blur", 2),
        ("blur", 3),
    ]
    blur_zero = card["robustness"][4]
    assert blur_zero["roc_auc"] == pytest.approx(card["roc_auc"])  # sigma 0 leaves the images as they are
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_train_command_end_to_end(cli, data: Path, tmp_path: Path):
    out = tmp_path / "cli.keras"
    code, stdout, stderr = cli(
        "train", data, "--out", out, "--epochs", "1", "--image-size", str(SIZE), "--batch-size", "8",
        "--rotation", "0", "--shift", "0", "--val-split", "0.25", "--target-fpr", "0.2", "--schedule", "plateau",
    )  # fmt: skip
    assert code == ExitCode.OK and stdout == ""
    assert "epoch 1:" in stderr and "skipped unreadable file" in stderr and f"saved {out}" in stderr
    assert "file_size alone separates real from fake" in stderr  # the test set's own shortcut
    spec = read_spec(out)
    assert spec.training["config"]["target_fpr"] == [0.2] and spec.training["data"][data.name]["val"]["fake"] == 5
    assert spec.arch == "compact" and spec.training["config"]["schedule"] == "plateau"
    code, _, stderr = cli("train", data, "--out", tmp_path / "x.keras", "--arch", "transformer")
    assert code == ExitCode.USAGE and "transformer" in stderr


def test_train_warns_about_a_model_no_better_than_chance(cli, data: Path, tmp_path: Path, monkeypatch):
    import deepscan.train
    from deepscan.evaluate import Evaluation

    def chance(data_dir, out, config, log, status):
        card = Evaluation(10, 0, 0.5, 0.45, 0.5, 0.5, 0.5, 0.5, {}, {}, 100.0, 0.1, [])
        return deepscan.train.TrainResult(Path(out), 1, False, card, [], {"data": card})

    monkeypatch.setattr(deepscan.train, "train", chance)
    code, _, err = cli("train", data, "--out", tmp_path / "m.keras")
    assert code == ExitCode.OK and "no better than chance" in " ".join(err.split())


def test_evaluate_reports_each_source_and_pooled(cli, trained: Path, data: Path, tmp_path: Path):
    second = make_dataset(tmp_path / "second", per_class=6, seed=3)
    code, out, _ = cli("evaluate", data, second, "--model", trained, "--format", "json")
    figures = json.loads(out)
    assert code == 0 and set(figures["sources"]) == {str(data), str(second)}
    cards = figures["sources"]
    assert cards[str(data)]["images"] + cards[str(second)]["images"] == figures["images"]
    assert cards[str(data)]["unreadable"] == figures["unreadable"] == 1 and cards[str(second)]["unreadable"] == 0
    _, scanned, _ = cli("scan", second, "--model", trained, "-q", "--format", "jsonl")
    rows = [json.loads(line) for line in scanned.splitlines()]
    fakes_flagged = sum(r["label"] == "fake" and Path(r["path"]).parent.name == "fake" for r in rows)
    reals_flagged = sum(r["label"] == "fake" and Path(r["path"]).parent.name == "real" for r in rows)
    assert cards[str(second)]["confusion"]["fake"]["fake"] == fakes_flagged
    assert cards[str(second)]["confusion"]["real"]["fake"] == reals_flagged
    for card in (figures, *cards.values()):
        for metric in ("roc_auc", "balanced_accuracy"):
            low, high = card["intervals"][metric]
            assert low <= card[metric] <= high
    assert cards[str(second)]["intervals"]["groups"] == cards[str(second)]["images"]  # no video frames here
    code, out, _ = cli("evaluate", data, second, "--model", trained)
    assert code == 0 and "per source" in out and "(pooled)" in " ".join(out.split())
    low, high = figures["intervals"]["roc_auc"]
    assert f"{figures['roc_auc']:.4f} ({low:.3f}-{high:.3f})" in out


def test_frames_of_one_video_stay_on_one_side_of_the_split(tmp_path: Path):
    """Files named v<video>_<frame> split by video, whatever their class; the split is still stratified."""
    for label in ("real", "fake"):
        for video in range(20):
            for frame in range(3):
                path = tmp_path / label / f"v{video + (0 if label == 'real' else 100):03d}_{frame}.png"
                write_pixels(path, video)
    split = split_dataset(tmp_path, 0.2, seed=3, group_pattern=r"^(v\d+)_")
    video = lambda path: Path(path).name.split("_")[0]  # noqa: E731
    assert not {video(p) for p in split.val_paths} & {video(p) for p in split.train_paths}
    assert split.counts()["val"] == {"real": 12, "fake": 12}  # 4 whole videos of 3 frames per class
    by_file = split_dataset(tmp_path, 0.2, seed=3, group_pattern="")
    assert {video(p) for p in by_file.val_paths} & {video(p) for p in by_file.train_paths}  # what grouping prevents


def test_each_source_has_its_share_of_the_mix_whatever_its_size():
    import tensorflow as tf

    from deepscan.train import source_mix, source_shares

    big = tf.data.Dataset.from_tensor_slices(np.zeros(500, np.float32))
    small = tf.data.Dataset.from_tensor_slices(np.ones(20, np.float32))
    drawn = np.array(list(source_mix([(big, 500), (small, 20)], seed=1).take(4000).as_numpy_iterator()))
    assert abs(drawn.mean() - 0.5) < 0.03  # 20 images drawn as often as 500
    weighted = source_mix([(big, 500), (small, 20)], seed=1, shares=source_shares(2, (1, 3))).take(4000)
    assert abs(np.mean(list(weighted.as_numpy_iterator())) - 0.75) < 0.03  # --source-weight 1 --source-weight 3


def test_source_weights_need_one_positive_weight_per_source(data: Path, tmp_path: Path):
    for weights in [(1.0,), (1.0, 0.0)]:
        with pytest.raises(DataError, match=r"one positive weight per DATA_DIR \(2\)"):
            train([data, data], tmp_path / "m.keras", TrainConfig(epochs=1, source_weights=weights))
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


def test_source_shifts_need_one_shift_per_source(data: Path, tmp_path: Path):
    for shifts in [(0.1,), (0.1, -0.1)]:
        with pytest.raises(DataError, match=r"one shift \(0 or more\) per DATA_DIR \(2\)"):
            train([data, data], tmp_path / "m.keras", TrainConfig(epochs=1, source_shifts=shifts))
    assert list(tmp_path.iterdir()) == []  # refused before anything is written


def test_each_source_is_shifted_by_its_own_amount():
    import keras

    from deepscan.train import augment_batches

    keras.utils.set_random_seed(5)
    still = Augmentation(flip=False, brightness=0, jpeg=0, blur=0)
    images = np.random.default_rng(0).integers(0, 256, (8, SIZE, SIZE, 3)).astype(np.float32)  # any shift shows
    sources = np.array([0, 1] * 4, np.int32)
    augment = augment_batches(still, shifts=(0.0, 0.25))
    shifted, labels = augment(images, np.zeros(8, np.float32), sources)
    moved = [not np.array_equal(after, before) for after, before in zip(np.asarray(shifted), images, strict=True)]
    assert moved == [False, True] * 4  # the aligned source untouched, every image of the other moved
    assert np.array_equal(np.asarray(labels), np.zeros(8))


def test_temperature_scaling_recovers_overconfidence_and_is_stored_in_the_weights():
    from deepscan.evaluate import calibration_error
    from deepscan.model import build_model
    from deepscan.train import calibrate, fit_temperature, scaled

    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, 20000)
    labels = rng.random(20000) < 1 / (1 + np.exp(-logits))  # calibrated at temperature 1...
    overconfident = 1 / (1 + np.exp(-3 * logits))  # ...reported three times too sharp
    temperature = fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3.0, rel=0.08)
    assert calibration_error(scaled(overconfident, temperature), labels) < calibration_error(overconfident, labels) / 3

    model, _ = build_model("reference", SIZE)
    pixels = rng.integers(0, 256, (4, SIZE, SIZE, 3)).astype(np.float32)
    before = model.predict(pixels, verbose=0).ravel()
    calibrate(model, 2.5)
    assert model.predict(pixels, verbose=0).ravel() == pytest.approx(scaled(before, 2.5), abs=1e-5)


def test_training_on_two_sources_reports_each_and_the_pool(tmp_path: Path):
    first = make_dataset(tmp_path / "gan", per_class=12, seed=1)
    second = make_dataset(tmp_path / "swap", per_class=4, seed=2)
    out = tmp_path / "two.keras"
    config = TrainConfig(arch="compact", image_size=SIZE, epochs=1, batch_size=8, val_split=0.25, augmentation=FAST)
    result = train([first, second], out, config, log=lambda line: None)
    assert set(result.sources) == {"gan", "swap"}
    spec = read_spec(out)
    assert set(spec.training["val_sources"]) == {"gan", "swap"} and spec.training["trained_on"] == "gan, swap"
    assert spec.training["data"]["swap"]["val"] == {"real": 1, "fake": 1}
    assert result.evaluation.images == sum(card.images for card in result.sources.values())  # pooled
    assert spec.training["calibration"]["temperature"] > 0


def test_a_size_shortcut_within_a_source_is_named(data: Path):
    from deepscan.evaluate import labelled_images
    from deepscan.train import shortcut_aucs

    aucs = shortcut_aucs(*labelled_images(str(data)))
    assert aucs["file_size"] > 0.9  # flat PNGs are small, noise is large: a shortcut a model could learn
    assert abs(aucs["pixels"] - 0.5) < 0.05  # every image has the same size (but the corrupt file)


def write_pixels(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)).save(path)


def test_evaluate_reports_the_share_flagged_in_folders_of_one_class(cli, trained: Path, data: Path, tmp_path: Path):
    """A folder of real photos alone (a new source, say) counts its false alarms; one of fakes alone, its catches."""
    both = make_dataset(tmp_path / "both", per_class=6, seed=5)
    reals, fakes = tmp_path / "reals", tmp_path / "fakes"
    for folder, label in ((reals, "real"), (fakes, "fake")):
        folder.mkdir()
        (both / label).rename(folder / label)
    code, out, _ = cli("evaluate", reals, fakes, "--model", trained, "--format", "json", "--threshold", "0.5")
    assert code == 0
    cards = json.loads(out)["sources"]
    _, scanned, _ = cli("scan", reals, fakes, "--model", trained, "-q", "--format", "jsonl", "--threshold", "0.5")
    flagged = {folder: 0 for folder in ("real", "fake")}
    for row in map(json.loads, scanned.splitlines()):
        flagged[Path(row["path"]).parent.name] += row["label"] == "fake"
    real_card, fake_card = cards[str(reals)], cards[str(fakes)]
    assert real_card["false_positive_rate"] == pytest.approx(flagged["real"] / 6)
    assert fake_card["true_positive_rate"] == pytest.approx(flagged["fake"] / 6)
    for card, known, unknown in (
        (real_card, "false_positive_rate", "true_positive_rate"),
        (fake_card, "true_positive_rate", "false_positive_rate"),
    ):
        low, high = card["intervals"][known]
        assert 0 <= low <= card[known] <= high <= 1 and high - low > 0.2  # six images say little
        assert card[unknown] is None or math.isnan(card[unknown])  # no such images: no figure
        assert math.isnan(card["roc_auc"]) and math.isnan(card["balanced_accuracy"])
    code, table, _ = cli("evaluate", reals, fakes, "--model", trained, "--threshold", "0.5")
    assert code == 0 and f"{flagged['real']}/6" in table and f"{flagged['fake']}/6" in table
    (tmp_path / "empty").mkdir()
    code, _, err = cli("evaluate", tmp_path / "empty", "--model", trained)
    assert code == ExitCode.USAGE and "real/, fake/ or both" in err


def test_a_wilson_interval_is_honest_about_no_false_alarm_in_a_small_folder():
    from deepscan.evaluate import wilson_interval

    low, high = wilson_interval(0.0, 20)
    assert low == 0.0 and 0.15 < high < 0.18  # 0 of 20 is compatible with up to about 16%
    low, high = wilson_interval(0.5, 1000)
    assert 0.46 < low < 0.5 < high < 0.54


def test_training_can_start_from_a_trained_model(trained: Path, data: Path, tmp_path: Path):
    """--init-from: the new model starts from the old weights (a fine-tune), and records which file it began with."""
    from deepscan.model import load_model, model_identity

    config = TrainConfig(arch="compact", image_size=SIZE, epochs=1, batch_size=8, learning_rate=0.0, augmentation=FAST)
    config.init_from = str(trained)
    out = tmp_path / "tuned.keras"
    train([data], out, config, log=lambda line: None)
    before, after = load_model(trained).keras_model, load_model(out).keras_model
    # a learning rate of 0 moves no kernel (calibration may rescale the output layer): the start was the trained one
    kernels = [
        (b.numpy(), a.numpy())
        for b, a in zip(before.weights, after.weights, strict=True)
        if b.path.endswith("kernel") and not b.path.startswith("p_fake")
    ]
    assert len(kernels) > 5 and all(np.array_equal(b, a) for b, a in kernels)
    assert read_spec(out).training["init_from"] == {
        "model": model_identity(trained),
        "training": read_spec(trained).training,
    }
    config.image_size = SIZE * 2
    with pytest.raises(DataError, match="--init-from"):
        train([data], tmp_path / "other.keras", config, log=lambda line: None)


def test_evaluate_plot_without_matplotlib_stops_before_scoring(cli, data: Path, trained: Path, monkeypatch):
    import importlib.util

    import deepscan.job

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a)
    )
    monkeypatch.setattr(deepscan.job.ScanJob, "run", lambda *a, **k: pytest.fail("scored before refusing --plot"))
    code, _, err = cli("evaluate", data, "--model", trained, "--plot", "card.png")
    assert code == ExitCode.USAGE and "--plot needs matplotlib" in err


def test_each_source_its_own_false_positive_target_and_epochs_0_only_rethresholds(trained: Path, data: Path, tmp_path):
    """--target-fpr once per source (photos strict, faces looser); --epochs 0 with --init-from trains nothing."""
    from deepscan.model import load_model

    second = make_dataset(tmp_path / "second", per_class=8, seed=4)
    config = TrainConfig(arch="compact", image_size=SIZE, epochs=0, batch_size=8, augmentation=FAST)
    config.init_from, config.target_fpr = str(trained), (0.0, 0.5)
    out = tmp_path / "rethresholded.keras"
    result = train([data, second], out, config, log=lambda line: None)
    assert result.sources[data.name].false_positive_rate == 0.0  # its own target binds
    assert result.sources[data.name].threshold == read_spec(out).threshold == result.evaluation.threshold
    assert read_spec(out).training["epochs_run"] == 0
    before, after = load_model(trained).keras_model, load_model(out).keras_model
    kernels = [(b, a) for b, a in zip(before.weights, after.weights, strict=True) if not b.path.startswith("p_fake")]
    assert all(np.array_equal(b.numpy(), a.numpy()) for b, a in kernels)  # nothing trained
    config.target_fpr = (0.1, 0.1, 0.1)
    with pytest.raises(DataError, match="one per DATA_DIR"):
        train([data, second], tmp_path / "bad.keras", config, log=lambda line: None)
    config.init_from, config.target_fpr = "", (0.1,)
    with pytest.raises(DataError, match="--init-from"):
        train([data], tmp_path / "bad.keras", config, log=lambda line: None)
