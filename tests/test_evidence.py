"""Evidence beyond pixels: C2PA manifests, IPTC source type in XMP, and generator metadata."""

from __future__ import annotations

import datetime
import io
import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from deepscan.errors import ExitCode
from deepscan.evidence import evidence_in, read_evidence
from deepscan.job import ScanSettings, scan

from .conftest import write_image

SAMPLES = Path(__file__).parent.parent.parent / "shared" / "provenance_samples"
IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
A1111 = (
    "a portrait of an astronaut\nNegative prompt: blurry\n"
    "Steps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1234, Size: 512x512, Model: sd_xl_base_1.0, Version: v1.10.1"
)


def jpeg_bytes(size: tuple[int, int] = (64, 64), **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 140, 200)).save(buffer, "JPEG", **save)
    return buffer.getvalue()


def png_with(tmp_path: Path, name: str, chunks: dict[str, str], compressed: bool = False) -> Path:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value, zip=compressed)
    path = tmp_path / name
    Image.new("RGB", (48, 48), (30, 60, 90)).save(path, pnginfo=info)
    return path


def xmp_packet(source_type: str, creator_tool: str = "") -> bytes:
    tool = f' xmp:CreatorTool="{creator_tool}"' if creator_tool else ""
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/"'
        f' xmlns:xmp="http://ns.adobe.com/xap/1.0/" Iptc4xmpExt:DigitalSourceType="{IPTC}{source_type}"{tool}/>'
        "</rdf:RDF></x:xmpmeta>"
    ).encode()


@pytest.fixture(scope="module")
def signer():
    """A C2PA signer with a certificate chain made here (a test root and a signing certificate)."""
    c2pa = pytest.importorskip("c2pa")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "deepscan tests"),
            ]
        )

    def usage(sign: bool) -> x509.KeyUsage:
        return x509.KeyUsage(sign, False, False, False, False, not sign, not sign, False, False)

    now = datetime.datetime.now(datetime.timezone.utc)
    root_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def certificate(subject: str, public: object, ca: bool) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(name("test root"))
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(usage(not ca), critical=True)
        )

    root = certificate("test root", root_key.public_key(), True).sign(root_key, hashes.SHA256())
    leaf = (
        certificate("test signer", key.public_key(), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    chain = leaf.public_bytes(serialization.Encoding.PEM) + root.public_bytes(serialization.Encoding.PEM)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg=b"es256", sign_cert=chain, private_key=private, ta_url=None))


def signed_jpeg(signer, source_type: str, generator: str = "TestGen") -> bytes:
    import c2pa

    manifest = {
        "claim_generator_info": [{"name": generator, "version": "1.0"}],
        "title": "generated.jpg",
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": IPTC + source_type}]},
            }
        ],
    }
    out = io.BytesIO()
    with c2pa.Builder(json.dumps(manifest)) as builder:
        builder.sign(signer, "image/jpeg", io.BytesIO(jpeg_bytes()), out)
    return out.getvalue()


def texts(path: Path) -> list[str]:
    return [item.text for item in read_evidence(str(path))]


@pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/provenance_samples is not beside the checkout")
def test_real_c2pa_samples_valid_and_invalid():
    pytest.importorskip("c2pa")
    valid = read_evidence(str(SAMPLES / "adobe-20220124-CA.jpg"))
    assert [(e.source, e.detail, e.status, e.declares_ai) for e in valid] == [
        ("c2pa", "manifest", "signature valid", False)
    ]
    assert valid[0].facts["signer"].startswith("C2PA Signer") and "ingredients" in valid[0].facts
    (broken_signature,) = read_evidence(str(SAMPLES / "adobe-20220124-E-sig-CA.jpg"))
    assert broken_signature.status == "invalid: claimSignature.mismatch" and "invalid" in broken_signature.text
    (changed_pixels,) = read_evidence(str(SAMPLES / "adobe-20220124-E-dat-CA.jpg"))
    assert changed_pixels.status.startswith("invalid: assertion.dataHash.mismatch")


def test_a_signed_ai_manifest_makes_the_file_fake_whatever_its_score(signer, tmp_path: Path, tiny_model: Path, cli):
    (tmp_path / "ai.jpg").write_bytes(signed_jpeg(signer, "trainedAlgorithmicMedia", "ImageGen"))
    (tmp_path / "composite.jpg").write_bytes(signed_jpeg(signer, "compositeWithTrainedAlgorithmicMedia"))
    (tmp_path / "camera.jpg").write_bytes(signed_jpeg(signer, "digitalCapture"))
    (tmp_path / "synthetic.jpg").write_bytes(signed_jpeg(signer, "algorithmicMedia"))
    code, out, err = cli("scan", tmp_path, "--model", tiny_model, "--threshold", "1", "-f", "jsonl", "--fail-on-fake")
    rows = {Path(row["path"]).name: row for row in map(json.loads, out.splitlines())}
    assert rows["ai.jpg"]["label"] == "fake" and rows["ai.jpg"]["score"] < 1  # the score stays the model's
    assert rows["ai.jpg"]["evidence"][0]["detail"] == "trainedAlgorithmicMedia"
    assert (
        rows["ai.jpg"]["evidence"][0]["status"] == "signature valid"
        and rows["ai.jpg"]["evidence"][0]["tool"] == "ImageGen 1.0"
    )
    assert rows["composite.jpg"]["label"] == "fake"
    assert rows["camera.jpg"]["label"] == "real" and rows["synthetic.jpg"]["label"] == "real"  # reported, not trusted
    assert rows["synthetic.jpg"]["evidence"][0]["detail"] == "algorithmicMedia"
    assert code == ExitCode.FAKE_FOUND  # --fail-on-fake fires on declared AI images
    assert "declared AI-made 2" in " ".join(err.split())
    code, out, _ = cli("scan", tmp_path / "ai.jpg", "--model", tiny_model, "--threshold", "1", "--no-evidence")
    assert code == ExitCode.OK and out.splitlines()[0] == "path,label,score,error" and ",real," in out


def test_a_manifest_invalidated_by_a_pixel_change_says_invalid(signer, tmp_path: Path):
    data = bytearray(signed_jpeg(signer, "trainedAlgorithmicMedia"))
    data[-20] ^= 0xFF  # inside the entropy-coded image data, after the manifest
    (item,) = evidence_in(bytes(data))
    assert item.status.startswith("invalid: ") and "invalid" in item.text
    assert item.declares_ai  # a claim of AI generation counts even when the image no longer matches it


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ({"parameters": A1111}, ["png:parameters (AUTOMATIC1111)"]),
        ({"parameters": A1111.replace("v1.10.1", "f2.0.1v1.10.1-previous")}, ["png:parameters (Forge)"]),
        ({"parameters": A1111 + ", App: SD.Next"}, ["png:parameters (SD.Next)"]),
        (
            {
                "parameters": '{"prompt": "a cat", "metadata_scheme": "fooocus", "version": "Fooocus v2.5.5"}',
                "fooocus_scheme": "fooocus",
            },
            ["png:parameters (Fooocus)", "png:fooocus_scheme (Fooocus)"],
        ),
        (
            {"prompt": '{"3": {"class_type": "KSampler"}}', "workflow": '{"nodes": []}'},
            ["png:prompt (ComfyUI)", "png:workflow (ComfyUI)"],
        ),
        ({"Software": "NovelAI", "Comment": '{"steps": 28, "sampler": "k_euler"}'}, ["png:Software (NovelAI)"]),
        ({"invokeai_metadata": '{"positive_prompt": "a cat"}'}, ["png:invokeai_metadata (InvokeAI)"]),
        (
            {"sd-metadata": '{"model": "stable diffusion"}', "Dream": '"a cat" -s 50'},
            ["png:sd-metadata (InvokeAI)", "png:Dream (InvokeAI)"],
        ),
        ({"Software": "GIMP 2.10", "Comment": "holiday photo"}, []),
    ],
)
def test_generator_text_chunks_name_the_tool(tmp_path: Path, chunks: dict[str, str], expected: list[str]):
    for compressed in (False, True):
        path = png_with(tmp_path, f"gen{compressed}.png", chunks, compressed)
        assert texts(path) == expected
        assert all(item.declares_ai for item in read_evidence(str(path)))


def test_xmp_digital_source_type_in_jpeg_png_and_webp(tmp_path: Path):
    packet = xmp_packet("trainedAlgorithmicMedia", "Midjourney v6")
    for name in ("xmp.jpg", "xmp.webp"):
        Image.new("RGB", (32, 32)).save(tmp_path / name, xmp=packet)
    for compressed in (False, True):  # PNG keeps XMP in an iTXt chunk, compressed or not
        info = PngImagePlugin.PngInfo()
        info.add_itxt("XML:com.adobe.xmp", packet.decode(), zip=compressed)
        Image.new("RGB", (32, 32)).save(tmp_path / f"xmp{compressed}.png", pnginfo=info)
    for name in ("xmp.jpg", "xmp.webp", "xmpFalse.png", "xmpTrue.png"):
        assert texts(tmp_path / name) == ["xmp:trainedAlgorithmicMedia", "xmp:CreatorTool (Midjourney v6)"], name
    Image.new("RGB", (32, 32)).save(tmp_path / "camera.jpg", xmp=xmp_packet("digitalCapture", "Adobe Lightroom"))
    (camera,) = read_evidence(str(tmp_path / "camera.jpg"))
    assert camera.detail == "digitalCapture" and not camera.declares_ai and camera.facts["meaning"]


def test_exif_user_comment_and_software(tmp_path: Path):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + A1111.encode("utf-16-be")  # as AUTOMATIC1111 writes JPEG and WebP
    exif[0x0131] = "NovelAI"
    Image.new("RGB", (32, 32)).save(tmp_path / "a1111.jpg", exif=exif)
    assert texts(tmp_path / "a1111.jpg") == ["exif:UserComment (AUTOMATIC1111)", "exif:Software (NovelAI)"]
    plain = Image.Exif()
    plain[0x0131] = "Canon EOS R5 Firmware 1.8"
    Image.new("RGB", (32, 32)).save(tmp_path / "camera.jpg", exif=plain)
    assert texts(tmp_path / "camera.jpg") == []


def test_malformed_and_enormous_metadata_is_an_evidence_error_never_a_lost_row(tmp_path: Path, tiny_model: Path):
    bomb = png_with(tmp_path, "bomb.png", {"Comment": "x"})
    data = bomb.read_bytes()
    text = b"parameters\0\0" + zlib.compress(b"Steps: 1, " * (2 << 20), 9)  # inflates to 20 MiB
    chunk = len(text).to_bytes(4, "big") + b"zTXt" + text + zlib.crc32(b"zTXt" + text).to_bytes(4, "big")
    bomb.write_bytes(data[:33] + chunk + data[33:])  # after IHDR
    corrupt = tmp_path / "corrupt_c2pa.jpg"
    plain = jpeg_bytes()
    segment = b"JP\0\x01\0\0\0\x01" + b"\0\0\0\x20jumb" + b"\0\0\0\x18jumdc2pa" + b"\xff" * 40
    corrupt.write_bytes(plain[:2] + b"\xff\xeb" + (len(segment) + 2).to_bytes(2, "big") + segment + plain[2:])
    huge_xmp = tmp_path / "huge_xmp.jpg"
    Image.new("RGB", (16, 16)).save(huge_xmp, xmp=b"<x:xmpmeta>" + b" " * 60000 + b"</x:xmpmeta>")
    records = {Path(r.path).name: r for r in scan([tmp_path], ScanSettings(model=tiny_model))}
    assert records["bomb.png"].error.startswith("metadata over Pillow's safety limit")  # Pillow refuses it too
    assert [e["detail"] for e in records["bomb.png"].columns["evidence"]] == ["unreadable"]
    assert "inflate past" in records["bomb.png"].columns["evidence"][0]["status"]
    assert records["corrupt_c2pa.jpg"].score is not None and records["huge_xmp.jpg"].score is not None
    for record in records.values():
        assert all(not e["declares_ai"] for e in record.columns["evidence"])


def test_evidence_comes_with_cached_and_resumed_rows(tmp_path: Path, tiny_model: Path, cli):
    png_with(tmp_path / "in", "gen.png", {"parameters": A1111}) if (tmp_path / "in").mkdir() is None else None
    write_image(tmp_path / "in" / "plain.png")
    cache, report = tmp_path / "c.db", tmp_path / "r.csv"
    for _ in range(2):
        code, out, _ = cli("scan", tmp_path / "in", "--model", tiny_model, "--cache", cache, "-q", "--threshold", "1")
        assert code == ExitCode.OK and "png:parameters (AUTOMATIC1111)" in out and ",fake," in out
    code, _, _ = cli("scan", tmp_path / "in", "--model", tiny_model, "--out", report, "-q", "--threshold", "1")
    first = report.read_text()
    code, _, _ = cli(
        "scan", tmp_path / "in", "--model", tiny_model, "--out", report, "--resume", "-q", "--threshold", "1"
    )
    assert report.read_text() == first


def test_inspect_prints_what_was_found(cli, tmp_path: Path):
    png_with(tmp_path, "gen.png", {"parameters": A1111})
    code, out, _ = cli("inspect", tmp_path / "gen.png", tmp_path / "missing.png", "--format", "json")
    found, missing = json.loads(out)
    assert code == ExitCode.UNREADABLE and missing["error"] == "file not found"
    assert found["declares_ai"] and found["evidence"][0]["tool"] == "AUTOMATIC1111"
    code, out, _ = cli("inspect", tmp_path / "gen.png")
    assert code == ExitCode.OK and "declares AI generation" in out and "png:parameters" in out


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


def test_hostile_xmp_is_read_in_linear_time(tmp_path: Path):
    """Three small files that made the XMP reader quadratic (minutes each): now each is read in well under a second."""
    import time

    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    xmp_chunk = _png_chunk(b"zTXt", b"XML:com.adobe.xmp\0\0" + zlib.compress(b"<x:xmpmeta " + b"a" * (4 << 20), 9))
    letters_png = png.getvalue()[:33] + xmp_chunk + png.getvalue()[33:]
    assert len(letters_png) < 8_000
    letters_jpeg = jpeg_bytes(xmp=b"<x:xmpmeta>" + b"b" * 60_000 + b"</x:xmpmeta>")
    gif = io.BytesIO()
    Image.new("P", (8, 8)).save(gif, "GIF")
    unclosed_gif = gif.getvalue() + b"<x:xmpmeta " * 10_000 + b"xmpmeta"
    for data in (letters_png, letters_jpeg, unclosed_gif):
        started = time.perf_counter()
        assert evidence_in(data) == []
        assert time.perf_counter() - started < 5  # was 25 s to over 300 s; a generous bound for a busy machine


def test_png_text_is_bounded_per_file_not_per_chunk(tmp_path: Path):
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, "PNG")
    chunks = b"".join(
        _png_chunk(b"zTXt", key.encode() + b"\0\0" + zlib.compress(b"x" * (3 << 20), 9))
        for key in ("prompt", "workflow", "Dream", "sd-metadata")  # 12 MiB together, 3 MiB each
    )
    found = evidence_in(png.getvalue()[:33] + chunks + png.getvalue()[33:])
    assert any(item.detail == "unreadable" and "in all" in item.status for item in found)
    ignored = b"".join(
        _png_chunk(b"zTXt", f"k{i}".encode() + b"\0\0" + zlib.compress(b"y" * (8 << 20))) for i in range(3)
    )
    assert evidence_in(png.getvalue()[:33] + ignored + png.getvalue()[33:]) == []  # keys deepscan never reads


@pytest.mark.parametrize(
    "software",
    ["FLIR Firefly DL", "Procesador de imagen", "Novel Aid", "GIMP 2.10", "Adobe Photoshop 25.0 (Macintosh)",
     "darktable 4.6.1", "Fluxus Camera", "Canon EOS R5 Firmware 1.8", "Image Creator Studio 2",
     "Imagenomic Portraiture", "Lightroom Classic 13.1", "digiKam-8.2.0", "Samsung Galaxy S23 Firmware",
     "Snapseed 2.0", "Aperture 3.6"],
)  # fmt: skip
def test_ordinary_camera_and_editor_names_are_not_generators(tmp_path: Path, software: str):
    exif = Image.Exif()
    exif[0x0131] = software
    Image.new("RGB", (16, 16)).save(tmp_path / "photo.jpg", exif=exif)
    assert texts(tmp_path / "photo.jpg") == []


@pytest.mark.parametrize(
    "software", ["NovelAI", "Midjourney v6", "Adobe Firefly Image 3", "DALL-E 3", "Stable Diffusion XL", "FLUX.1 [dev]",
                 "ComfyUI", "Google Imagen 3", "Leonardo.Ai"],
)  # fmt: skip
def test_generator_names_are_recognised(tmp_path: Path, software: str):
    exif = Image.Exif()
    exif[0x0131] = software
    Image.new("RGB", (16, 16)).save(tmp_path / "made.jpg", exif=exif)
    assert texts(tmp_path / "made.jpg") == [f"exif:Software ({software})"]


def test_an_xmp_declaration_in_a_comment_or_in_another_fields_text_declares_nothing(tmp_path: Path):
    declared = xmp_packet("trainedAlgorithmicMedia").decode()
    inner = declared[declared.index("<rdf:Description") : declared.index("</rdf:RDF>")]
    commented = declared.replace(inner, f"<!-- {inner} -->")
    quoted = declared.replace(
        inner,
        f'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>{html_escape(inner)}</dc:title></rdf:Description>',
    )
    for name, packet in (("commented", commented), ("quoted", quoted)):
        Image.new("RGB", (16, 16)).save(tmp_path / f"{name}.jpg", xmp=packet.encode())
        assert texts(tmp_path / f"{name}.jpg") == [], name
    Image.new("RGB", (16, 16)).save(tmp_path / "declared.jpg", xmp=declared.encode())
    assert texts(tmp_path / "declared.jpg") == ["xmp:trainedAlgorithmicMedia"]


def html_escape(text: str) -> str:
    import html

    return html.escape(text)


def test_a_damaged_c2pa_store_is_reported_only_a_missing_one_is_silent(monkeypatch):
    """Error kinds, not message text: a store whose assertion is 'not found' is damaged, not absent."""
    c2pa = pytest.importorskip("c2pa")
    data = jpeg_bytes()[:2] + b"\xff\xeb\x00\x10JP\0\x01c2pa jumb" + jpeg_bytes()[2:]

    def reader(error: Exception):
        def make(*args: object) -> None:
            raise error

        return make

    monkeypatch.setattr(c2pa, "Reader", reader(c2pa.C2paError.AssertionNotFound("assertion not found")))
    (damaged,) = evidence_in(data)
    assert damaged.detail == "unreadable" and "not found" in damaged.status
    monkeypatch.setattr(c2pa, "Reader", reader(c2pa.C2paError.ManifestNotFound("no JUMBF data found")))
    assert evidence_in(data) == []


def test_a_jpeg_with_more_metadata_than_the_limit_says_so_in_bounded_memory(tmp_path: Path):
    """200 MB of APP11 segments that look like a C2PA store took 0.9 GB to read (1.9 GB in a scan); past 16 MiB of
    metadata segments the reader now says it did not read them. Measured in a child process (VmHWM, its own peak)."""
    body = b"c2pa" + b"x" * 65_525
    segment = b"\xff\xeb" + (len(body) + 2).to_bytes(2, "big") + body
    image = jpeg_bytes()
    path = tmp_path / "bloated.jpg"
    path.write_bytes(image[:2] + segment * 3_200 + image[2:])  # 210 MB
    code = (
        "import re, sys; from deepscan.evidence import read_evidence\n"
        "print([item.text for item in read_evidence(sys.argv[1])])\n"
        "print(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1))"
    )
    result = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    items, peak_kib = result.stdout.splitlines()
    assert items == "['jpeg:unreadable (over 16 MiB of metadata segments: not read)']"
    assert int(peak_kib) < 300_000  # the 64 MiB read of the file, not the file's size several times over

    just_under = tmp_path / "under.jpg"  # 15 MiB of segments, then an XMP declaration: still read
    xmp = f'<x:xmpmeta><rdf:Description Iptc4xmpExt:DigitalSourceType="{IPTC}trainedAlgorithmicMedia"/></x:xmpmeta>'
    app1 = b"http://ns.adobe.com/xap/1.0/\0" + xmp.encode()
    just_under.write_bytes(
        image[:2] + segment * 240 + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + image[2:]
    )
    assert [item.declares_ai for item in read_evidence(str(just_under))] == [True]
