import os
from pathlib import Path

from deepscan.discovery import find_images, is_image_name


def names(paths, root):
    return [os.path.relpath(p, root) for p in paths]


def test_walks_recursively_in_name_order_with_image_extensions_only(photos: Path):
    found = names(find_images([photos]), photos)
    assert found == ["a.PNG", "b.jpg", "nested/broken.jpg", "nested/deeper/c.webp"]


def test_no_recursive_stays_in_the_top_folder(photos: Path):
    assert names(find_images([photos], recursive=False), photos) == ["a.PNG", "b.jpg"]


def test_extensions_are_case_insensitive():
    for name in ("x.jpg", "x.JPEG", "x.Png", "x.bmp", "x.GIF", "x.webp", "x.tif", "x.TIFF"):
        assert is_image_name(name), name
    for name in ("x.txt", "x.jpg.txt", "jpg", "x.pdf", "x.eps"):
        assert not is_image_name(name), name


def test_every_format_pillow_decodes_is_found_in_folders(tmp_path: Path, tiny_model: Path):
    from PIL import features

    from deepscan.job import ScanSettings, scan

    from .conftest import write_image

    names_written = ["a.avif"] if features.check("avif") else []
    names_written += ["b.qoi", "c.jp2", "d.tga"]
    for index, name in enumerate(names_written):
        write_image(tmp_path / name, index)
    records = list(scan([tmp_path], ScanSettings(model=tiny_model)))
    assert [Path(r.path).name for r in records] == names_written
    assert all(r.score is not None for r in records), records


def test_each_path_once_and_every_name_of_a_file_its_own_row(photos: Path):
    """A path named twice is one row; a hard or symbolic link is another name, and so another row."""
    (photos / "link.jpg").symlink_to(photos / "b.jpg")
    os.link(photos / "b.jpg", photos / "hard.jpg")
    found = names(find_images([photos, photos / "b.jpg", photos / "nested", photos / "." / "a.PNG"]), photos)
    assert found.count("b.jpg") == 1 and found.count("a.PNG") == 1
    assert found.count("link.jpg") == 1 and found.count("hard.jpg") == 1
    assert found.count("nested/broken.jpg") == 1  # a folder given again is not walked again


def test_a_symlink_cycle_does_not_loop(photos: Path):
    (photos / "nested" / "deeper" / "loop").symlink_to(photos, target_is_directory=True)
    found = names(find_images([photos]), photos)
    assert found == ["a.PNG", "b.jpg", "nested/broken.jpg", "nested/deeper/c.webp"]


def test_a_directory_named_like_an_image_is_not_a_file(tmp_path: Path):
    (tmp_path / "album.jpg").mkdir()
    (tmp_path / "album.jpg" / "inside.png").write_bytes(b"")
    assert names(find_images([tmp_path]), tmp_path) == ["album.jpg/inside.png"]


def test_named_files_and_missing_paths_are_kept_for_error_rows(tmp_path: Path):
    text = tmp_path / "named.txt"
    text.write_text("x")
    missing = tmp_path / "missing.jpg"
    dangling = tmp_path / "dangling.jpg"
    dangling.symlink_to(tmp_path / "gone.jpg")
    assert list(find_images([text, missing])) == [str(text), str(missing)]
    assert list(find_images([tmp_path])) == [str(dangling)]
