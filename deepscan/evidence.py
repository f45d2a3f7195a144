"""Evidence beyond pixels: what a file's own metadata says about where it came from.

Three kinds, read from the public formats:

- C2PA Content Credentials, read and validated by the official library
  (``c2pa-python``): the active manifest's generator, actions and their IPTC
  digital source type, ingredients, signer and validation state. Offline
  there is no trust list: a signature is reported as verifying or not, never
  as trusted.
- The IPTC digital source type in XMP packets (JPEG APP1, PNG iTXt, WebP,
  TIFF, HEIF/AVIF), and the XMP ``CreatorTool``.
- Generator parameters: PNG text chunks (AUTOMATIC1111/Forge/SD.Next and
  Fooocus ``parameters``, ComfyUI ``prompt``/``workflow``, NovelAI, InvokeAI),
  the same parameters in EXIF ``UserComment``, and generator names in EXIF
  ``Software``.

Each reader looks for its markers in the bytes first and reads at most a
bounded amount: a malformed or enormous manifest, packet or chunk becomes an
evidence item with the reason, never an exception.
"""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any
from xml.etree import ElementTree

from PIL import Image

from deepscan.files import open_regular

MAX_FILE_BYTES = 64 << 20  # metadata is looked for in at most this much of a file
MAX_JPEG_METADATA_BYTES = 16 << 20  # a JPEG's segments before its image data; C2PA reading costs about 2.5x this
MAX_XMP_BYTES = 4 << 20
MAX_TEXT_BYTES = 8 << 20  # a PNG's compressed text chunks, inflated, in all

AI_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})
# The IPTC Digital Source Type vocabulary (cv.iptc.org/newscodes/digitalsourcetype), for people.
SOURCE_TYPES = {
    "digitalCapture": "captured by a camera or scanner",
    "computationalCapture": "captured, then processed by the device",
    "negativeFilm": "scanned from negative film",
    "positiveFilm": "scanned from positive film",
    "print": "scanned from a print",
    "humanEdits": "edited by a person",
    "minorHumanEdits": "minor edits by a person",
    "compositeCapture": "a composite of captures",
    "algorithmicallyEnhanced": "enhanced by an algorithm",
    "dataDrivenMedia": "made from data (a chart, a map)",
    "digitalArt": "digital art made by a person",
    "virtualRecording": "a recording of a virtual scene",
    "compositeSynthetic": "a composite including synthetic elements",
    "trainedAlgorithmicMedia": "made by a generative AI model",
    "compositeWithTrainedAlgorithmicMedia": "a composite with content from a generative AI model",
    "algorithmicMedia": "made by an algorithm without training data (synthetic, not generative AI)",
    "screenCapture": "a screen capture",
}
# Generator names as whole words: "FLIR Firefly DL" (a camera), "Procesador de imagen" and "Novel Aid" are not.
GENERATORS = re.compile(
    r"\b(?:stable[ -]?diffusion|novel ?ai|midjourney|dall[-·]?e|adobe firefly|comfyui|invoke ?ai|fooocus|"
    r"automatic1111|leonardo\.ai|ideogram|google imagen|imagen [1-9]|craiyon|dreamstudio|bing image creator|"
    r"flux(?:\.1)?|sd\.next|sdxl)\b",
    re.IGNORECASE,
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
XMP_OPEN, XMP_CLOSE = b"<x:xmpmeta", b"</x:xmpmeta>"
# For packets that are not well-formed XML: a field as an attribute (name="value") or an element (<name>value<,
# or inside one rdf:Seq/Bag/Alt item). The name is found literally and every repeat is bounded, so the pattern
# runs in linear time (an optional prefix made long runs of letters quadratic).
_XMP_FIELD = (
    r"(?<![\w-])%s(?:\s*=\s*\"([^\"]{0,4096})\"|\s*>\s*(?:<rdf:\w{1,8}>\s*<rdf:li[^>]{0,256}>)?([^<]{0,4096})<)"
)


@dataclass(frozen=True)
class Evidence:
    """One thing a file's metadata says, in a short machine-readable form."""

    source: str  # "c2pa", "xmp", "png", "exif"; "jpeg" for metadata too large to read
    detail: str  # a digital source type, a text chunk's key, "Software", "unreadable"...
    tool: str = ""  # what wrote it, when known
    declares_ai: bool = False  # the file says it was made by generative AI
    status: str = ""  # C2PA: "signature valid" or "invalid: ..."; for unreadable metadata, why
    facts: dict[str, str] = field(default_factory=dict, compare=False)  # more, for `deepscan inspect`

    @property
    def text(self) -> str:
        notes = ", ".join(note for note in (self.tool, self.status) if note)
        return f"{self.source}:{self.detail}" + (f" ({notes})" if notes else "")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


EVIDENCE_COLUMN = "evidence"


def evidence_text(items: list[dict[str, Any]]) -> str:
    """The CSV form of an evidence column: items separated by '; ', each as source:detail (tool, status)."""
    return "; ".join(Evidence(**item).text for item in items)


def declares_ai(items: list[dict[str, Any]]) -> bool:
    """Whether an evidence column says the file was made by generative AI."""
    return any(item["declares_ai"] for item in items)


def read_evidence(path: str) -> list[Evidence]:
    """Everything the file's own metadata says about its origin (see the module docstring)."""
    with open_regular(path) as handle:
        data = handle.read(MAX_JPEG_METADATA_BYTES + 4)
        full = len(data) > MAX_JPEG_METADATA_BYTES
        if full and data.startswith(b"\xff\xd8") and _jpeg_header_end(data) == len(data):  # no image data yet
            return [_TOO_MUCH_JPEG_METADATA]
        data += handle.read(MAX_FILE_BYTES - len(data))
    return evidence_in(data)


def evidence_in(data: bytes) -> list[Evidence]:
    """The evidence in a file's bytes: markers are looked for first, parsers run only where one is found.

    In a JPEG, only its metadata segments (before the image data) are searched, and segments
    over MAX_JPEG_METADATA_BYTES in all are not read: one item says so.
    """
    header_end = _jpeg_header_end(data) if data.startswith(b"\xff\xd8") else len(data)
    if header_end > MAX_JPEG_METADATA_BYTES:
        return [_TOO_MUCH_JPEG_METADATA]
    found: list[Evidence] = []
    if data.find(b"c2pa", 0, header_end) != -1:
        found += _c2pa(data)
    if data.startswith(PNG_SIGNATURE):
        found += _png_text(data)
    if data.find(XMP_OPEN, 0, header_end) != -1:
        for packet in xmp_packets(data, header_end):
            found += _xmp(packet)
    if data.find(b"Exif", 0, header_end) != -1 or data[:4] in (b"II*\0", b"MM\0*"):
        found += _exif(data)
    return list(dict.fromkeys(found))


_TOO_MUCH_JPEG_METADATA = Evidence(
    "jpeg", "unreadable", status=f"over {MAX_JPEG_METADATA_BYTES >> 20} MiB of metadata segments: not read"
)


def _jpeg_header_end(data: bytes) -> int:
    """Where a JPEG's image data starts (its metadata segments all come before): the SOS marker."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xDA:  # start of scan
            return position
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            position += 2
        else:
            position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
    return len(data)  # malformed: look everywhere


class EvidenceColumn:
    """The column provider behind the ``evidence`` column (plain dicts); a file that cannot be read has none."""

    columns = (EVIDENCE_COLUMN,)

    def values(self, path: str, digest: str | None) -> dict[str, Any]:
        try:
            return {EVIDENCE_COLUMN: [item.to_dict() for item in read_evidence(path)]}
        except OSError:
            return {EVIDENCE_COLUMN: []}  # the row's own error column says why


# --- C2PA --------------------------------------------------------------------

_MIME = ((b"\xff\xd8", "image/jpeg"), (PNG_SIGNATURE, "image/png"), (b"II*\0", "image/tiff"), (b"MM\0*", "image/tiff"))
UNTRUSTED = "signingCredential.untrusted"  # offline there is no trust list: expected, not a failure


def _mime(data: bytes) -> str | None:
    for magic, mime in _MIME:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "image/avif" if data[8:12] in (b"avif", b"avis") else "image/heic"
    return None


def _c2pa(data: bytes) -> list[Evidence]:
    mime = _mime(data)
    if mime is None:
        return []
    try:
        import c2pa
    except ImportError:
        return [Evidence("c2pa", "unreadable", status="the c2pa-python library is not installed")]
    try:
        with c2pa.Reader(mime, io.BytesIO(data)) as reader:
            store = json.loads(reader.json())
    except c2pa.C2paError.ManifestNotFound:
        return []  # the bytes "c2pa" appeared, but there is no manifest store: nothing to say
    except Exception as err:  # other C2paError kinds, and worse on damaged stores: a store that cannot be read
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        return [Evidence("c2pa", "unreadable", status=f"invalid: {message[:200]}")]
    try:
        return _manifest_evidence(store)
    except (KeyError, TypeError, AttributeError, IndexError) as err:
        return [Evidence("c2pa", "unreadable", status=f"invalid: malformed manifest store ({err})")]


def _manifest_evidence(store: dict[str, Any]) -> list[Evidence]:
    manifest = store["manifests"][store["active_manifest"]]
    failures = [item["code"] for item in store.get("validation_status") or [] if item.get("code") != UNTRUSTED]
    valid = store.get("validation_state", "Valid" if not failures else "Invalid") != "Invalid" and not failures
    status = "signature valid" if valid else f"invalid: {', '.join(failures) or 'validation failed'}"
    info = (manifest.get("claim_generator_info") or [{}])[0]
    generator = manifest.get("claim_generator") or " ".join(str(info.get(k, "")) for k in ("name", "version")).strip()
    actions = [
        action
        for assertion in manifest.get("assertions") or []
        if str(assertion.get("label", "")).startswith("c2pa.actions")
        for action in (assertion.get("data") or {}).get("actions") or []
    ]
    signature = manifest.get("signature_info") or {}
    facts = {
        "claim generator": generator,
        "actions": ", ".join(str(a.get("action", "")) for a in actions),
        "ingredients": ", ".join(str(i.get("title", "?")) for i in manifest.get("ingredients") or []),
        "signer": ", ".join(str(signature[k]) for k in ("common_name", "issuer") if signature.get(k)),
        "signed at": str(signature.get("time", "")),
        "validation": status + (" (the signer is on no trust list: none is used offline)" if valid else ""),
    }
    facts = {name: value for name, value in facts.items() if value}
    source_types = dict.fromkeys(
        _source_type(str(a["digitalSourceType"])) for a in actions if a.get("digitalSourceType")
    )
    if not source_types:
        return [Evidence("c2pa", "manifest", generator, False, status, facts)]
    return [
        Evidence(
            "c2pa", kind, generator, kind in AI_SOURCE_TYPES, status, {**facts, "meaning": SOURCE_TYPES.get(kind, "")}
        )
        for kind in source_types
    ]


def _source_type(value: str) -> str:
    """The vocabulary's term from a full IPTC URI (or a bare term)."""
    return value.rstrip("/").rsplit("/", 1)[-1]


# --- XMP ---------------------------------------------------------------------


def xmp_packets(data: bytes, stop: int | None = None) -> Iterator[bytes]:
    """Each <x:xmpmeta>...</x:xmpmeta> of at most MAX_XMP_BYTES before ``stop``, found with bytes.find in one pass.

    A regular expression rescanned megabytes from every unclosed opening
    tag; here each closing tag is looked for once, whatever the openings.
    """
    stop = len(data) if stop is None else stop
    start, end = data.find(XMP_OPEN, 0, stop), -1
    while start != -1:
        if end < start:
            end = data.find(XMP_CLOSE, start, stop)
            if end == -1:
                return
        if end - start <= MAX_XMP_BYTES:
            yield data[start : end + len(XMP_CLOSE)]
            start = data.find(XMP_OPEN, end, stop)
        else:
            start = data.find(XMP_OPEN, start + 1, stop)


def _xmp(packet: bytes) -> list[Evidence]:
    found = []
    fields = _xmp_fields(packet.decode("utf-8", "replace"))
    for value in fields["DigitalSourceType"]:
        kind = _source_type(value)
        found.append(
            Evidence("xmp", kind, declares_ai=kind in AI_SOURCE_TYPES, facts={"meaning": SOURCE_TYPES.get(kind, "")})
        )
    for tool in fields["CreatorTool"]:
        if GENERATORS.search(tool):
            found.append(Evidence("xmp", "CreatorTool", tool, declares_ai=True))
    return found


XMP_NAMES = ("DigitalSourceType", "CreatorTool")


def _xmp_fields(text: str) -> dict[str, list[str]]:
    """The values of the XMP fields deepscan reads, as attributes or elements of any namespace prefix.

    Parsed as XML (expat expands no external entity and stops entity
    amplification), so a name in a comment or inside another field's text
    declares nothing; a packet that is not well-formed falls back to a
    bounded pattern over its text without comments.
    """
    values: dict[str, list[str]] = {name: [] for name in XMP_NAMES}
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError:
        plain = _without_comments(text)
        return {name: [(a or b).strip() for a, b in re.findall(_XMP_FIELD % name, plain) if (a or b).strip()]
                for name in XMP_NAMES}  # fmt: skip
    for element in root.iter():
        for key, value in element.attrib.items():
            if _local(key) in values and value.strip():
                values[_local(key)].append(value.strip())
        if _local(element.tag) in values:
            text_of = next((t.strip() for t in element.itertext() if t.strip()), "")
            if text_of:
                values[_local(element.tag)].append(text_of)
    return values


def _local(name: str) -> str:
    return name.rpartition("}")[2]


def _without_comments(text: str) -> str:
    """The text less its <!-- ... --> comments, in one pass (an unclosed one runs to the end)."""
    parts, position = [], 0
    while (start := text.find("<!--", position)) != -1:
        parts.append(text[position:start])
        end = text.find("-->", start + 4)
        if end == -1:
            return "".join(parts)
        position = end + 3
    return "".join(parts) + text[position:]


# --- PNG text chunks ---------------------------------------------------------


GENERATOR_KEYS = frozenset(
    {"parameters", "prompt", "workflow", "invokeai_metadata", "invokeai_graph", "sd-metadata", "Dream"}
    | {"fooocus_scheme", "Software"}
)


def _png_text(data: bytes) -> list[Evidence]:
    """The generator keys and XMP of a PNG's text chunks; its compressed text inflates to MAX_TEXT_BYTES in all."""
    found: list[Evidence] = []
    position = len(PNG_SIGNATURE)
    texts: dict[str, str] = {}
    budget = [MAX_TEXT_BYTES]  # what is left to inflate, shared by the file's chunks
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        body = data[position + 8 : position + 8 + length]
        position += 12 + length
        if kind == b"IEND":
            break
        if kind not in (b"tEXt", b"zTXt", b"iTXt"):
            continue
        key = body.partition(b"\0")[0].decode("latin-1")
        if key != "XML:com.adobe.xmp" and key not in GENERATOR_KEYS:
            continue  # never inflated: nothing deepscan reads
        try:
            value = _text_chunk(kind, body, budget)
        except ValueError as err:
            found.append(Evidence("png", "unreadable", status=str(err)))
            if not budget[0]:
                break
            continue
        if key == "XML:com.adobe.xmp":
            found += _xmp(value.encode())
        else:
            texts[key] = value
    return found + _generator_chunks(texts)


def _text_chunk(kind: bytes, body: bytes, budget: list[int]) -> str:
    key, _, rest = body.partition(b"\0")
    name = key.decode("latin-1")
    if kind == b"tEXt":
        return rest.decode("latin-1")
    if kind == b"zTXt":
        return _inflate(rest[1:], name, budget).decode("latin-1")
    compressed, rest = rest[:1] == b"\1", rest[2:]
    _, _, rest = rest.partition(b"\0")  # language tag
    _, _, text = rest.partition(b"\0")  # translated keyword
    return (_inflate(text, name, budget) if compressed else text).decode("utf-8", "replace")


def _inflate(data: bytes, name: str, budget: list[int]) -> bytes:
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, budget[0])
    except zlib.error as err:
        raise ValueError(f"text chunk {name!r} is corrupt ({err})") from None
    budget[0] -= len(text)
    if inflater.unconsumed_tail:
        budget[0] = 0
        raise ValueError(f"text chunks inflate past {MAX_TEXT_BYTES >> 20} MiB in all (at {name!r})")
    return text


def _generator_chunks(texts: dict[str, str]) -> list[Evidence]:
    """The PNG text keys that the common generators write, and the tool each says wrote it."""
    found = []
    if "parameters" in texts:
        found.append(Evidence("png", "parameters", _parameters_tool(texts["parameters"]), True))
    for key in ("prompt", "workflow"):
        if key in texts and texts[key].lstrip().startswith("{"):
            found.append(Evidence("png", key, "ComfyUI", True))
    for key in ("invokeai_metadata", "invokeai_graph", "sd-metadata", "Dream"):
        if key in texts:
            found.append(Evidence("png", key, "InvokeAI", True))
    if "fooocus_scheme" in texts:
        found.append(Evidence("png", "fooocus_scheme", "Fooocus", True))
    software = texts.get("Software", "")
    if GENERATORS.search(software):
        tool = "NovelAI" if "novelai" in software.lower() else software
        found.append(Evidence("png", "Software", tool[:80], True))
    return found


def _parameters_tool(text: str) -> str:
    """Which front end wrote generation parameters (AUTOMATIC1111's format, shared by its forks)."""
    if text.lstrip().startswith("{"):
        return "Fooocus" if "fooocus" in text.lower() else "unknown tool (JSON parameters)"
    version = re.search(r"Version: (\S+)", text)
    if "SD.Next" in text or re.search(r"App: SD\.Next", text):
        return "SD.Next"
    if version and version.group(1).startswith("f"):
        return "Forge"
    if "Steps:" in text or version:
        return "AUTOMATIC1111"
    return "unknown tool"


# --- EXIF --------------------------------------------------------------------

EXIF_IFD, USER_COMMENT, SOFTWARE = 0x8769, 0x9286, 0x0131


def _exif(data: bytes) -> list[Evidence]:
    try:
        with Image.open(io.BytesIO(data)) as image:
            exif = image.getexif()
            software = str(exif.get(SOFTWARE, ""))
            comment = exif.get_ifd(EXIF_IFD).get(USER_COMMENT)
    except Exception:  # no EXIF Pillow can read: nothing to say
        return []
    found = []
    text = _user_comment(comment)
    if "Steps:" in text and ("Sampler:" in text or "Seed:" in text):
        found.append(Evidence("exif", "UserComment", _parameters_tool(text), True))
    if GENERATORS.search(software):
        found.append(Evidence("exif", "Software", software[:80], True))
    return found


def _user_comment(value: Any) -> str:
    """EXIF UserComment: an 8-byte character code, then the text (AUTOMATIC1111 writes UTF-16 as UNICODE)."""
    if isinstance(value, str):
        return value
    if not isinstance(value, bytes):
        return ""
    code, text = value[:8], value[8:]
    if code.startswith(b"UNICODE"):
        big = text.decode("utf-16-be", "replace")
        return big if big.isascii() or "Steps" in big else text.decode("utf-16-le", "replace")
    return text.decode("utf-8", "replace")
