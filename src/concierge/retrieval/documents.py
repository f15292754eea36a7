"""Knowledge-base documents: the validated unit a tenant ingests, and loaders for files and folders.

A `Document` is checked once, when it is made, so every later stage (chunking, embedding, indexing)
can trust its fields. Loaders turn Markdown, plain text and HTML files into documents; Markdown and
text files may start with a small front-matter block that sets the metadata (parsed here, without a
YAML dependency, because only flat `key: value` pairs are allowed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal, cast

from ..core.errors import ValidationError

MAX_DOCUMENT_BYTES = 2_000_000
"""Largest document text (UTF-8 bytes) accepted: bigger files are almost always a mistake, not a policy."""

Visibility = Literal["public", "internal"]
Format = Literal["markdown", "text", "html"]

_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_VISIBILITIES: tuple[str, ...] = ("public", "internal")
_FORMATS: tuple[str, ...] = ("markdown", "text", "html")

SUFFIX_FORMATS: dict[str, Format] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".html": "html",
    ".htm": "html",
}
"""File suffixes the loaders understand, and the format each one means."""

_FRONT_MATTER_KEYS = ("doc_id", "title", "version", "updated_at", "visibility", "authority")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Document:
    """One tenant's document, validated on construction so that later stages never re-check it."""

    tenant: str
    doc_id: str
    text: str
    title: str = ""
    version: int = 1
    updated_at: datetime = field(default_factory=_utc_now)
    visibility: Visibility = "public"
    authority: float = 1.0
    format: Format = "markdown"
    source: str | None = None

    def __post_init__(self) -> None:
        _check_id("tenant", self.tenant)
        _check_id("doc_id", self.doc_id)
        if not isinstance(self.text, str) or not self.text.strip():
            raise ValidationError(f"document {self.doc_id!r} has no text",
                                  hint="a document needs non-blank text to be searchable")
        size = len(self.text.encode("utf-8"))
        if size > MAX_DOCUMENT_BYTES:
            raise ValidationError(
                f"document {self.doc_id!r} is {size:,} bytes, over the limit of {MAX_DOCUMENT_BYTES:,} bytes",
                hint="split it into smaller documents")
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 1:
            raise ValidationError(f"document {self.doc_id!r} has version {self.version!r}",
                                  hint="version must be an integer of at least 1")
        if isinstance(self.authority, bool) or not isinstance(self.authority, int | float) \
                or not 0.0 <= float(self.authority) <= 1.0:
            raise ValidationError(f"document {self.doc_id!r} has authority {self.authority!r}",
                                  hint="authority must be a number between 0 and 1")
        object.__setattr__(self, "authority", float(self.authority))
        if self.visibility not in _VISIBILITIES:
            raise ValidationError(f"document {self.doc_id!r} has visibility {self.visibility!r}",
                                  hint=f"use one of: {', '.join(_VISIBILITIES)}")
        if self.format not in _FORMATS:
            raise ValidationError(f"document {self.doc_id!r} has format {self.format!r}",
                                  hint=f"use one of: {', '.join(_FORMATS)}")
        if not isinstance(self.updated_at, datetime) or self.updated_at.tzinfo is None:
            raise ValidationError(f"document {self.doc_id!r} has updated_at {self.updated_at!r}",
                                  hint="updated_at must be a timezone-aware datetime")
        object.__setattr__(self, "updated_at", self.updated_at.astimezone(UTC))


def _check_id(name: str, value: object) -> None:
    if not isinstance(value, str) or not _ID_PATTERN.match(value):
        raise ValidationError(
            f"{name} {value!r} is not a valid identifier",
            hint=f"{name} must be 1-64 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit")


def default_doc_id(path: Path) -> str:
    """The doc_id a file gets when its front matter names none: its stem, lowercased and sanitised."""
    candidate = re.sub(r"[^a-z0-9_.-]", "-", path.stem.lower())
    candidate = re.sub(r"^[^a-z0-9]+", "", candidate)[:64]
    if not candidate:
        raise ValidationError(f"{path}: cannot derive a doc_id from the file name",
                              hint="set doc_id in the front matter or pass doc_id=...")
    return candidate


# --- reading files ---------------------------------------------------------------------------------


def load_document(path: Path, tenant: str, **overrides: Any) -> Document:
    """Read one file into a Document; front matter sets metadata and `overrides` win over both."""
    path = Path(path)
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValidationError(f"{path}: unsupported file type {path.suffix or '(no suffix)'!r}",
                              hint=f"supported suffixes: {', '.join(SUFFIX_FORMATS)}")
    unknown = set(overrides) - {f.name for f in fields(Document)} - {"tenant"}
    if unknown or "tenant" in overrides:
        bad = sorted(unknown | ({"tenant"} & set(overrides)))
        raise ValidationError(f"cannot override {', '.join(bad)} when loading {path}",
                              hint="overrides must be Document fields other than tenant")
    text = _read_utf8(path)
    meta: dict[str, Any] = {}
    title = ""
    if fmt in ("markdown", "text"):
        meta, text = _split_front_matter(text, path)
    else:
        title, text = html_to_text(text)
    fields_: dict[str, Any] = {"doc_id": default_doc_id(path), "title": title, "format": fmt,
                               "source": str(path)}
    fields_.update(meta)
    fields_.update(overrides)
    try:
        return Document(tenant=tenant, text=text, **fields_)
    except ValidationError as error:
        raise ValidationError(f"{path}: {error.message}", hint=error.hint) from error


def load_folder(folder: Path, tenant: str) -> list[Document]:
    """Load every supported file under `folder` (recursively, sorted by path); other files are ignored."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValidationError(f"{folder} is not a folder", hint="pass the folder that holds the documents")
    paths = sorted(p for p in folder.rglob("*")
                   if p.is_file() and p.suffix.lower() in SUFFIX_FORMATS
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return [load_document(p, tenant) for p in paths]


def _read_utf8(path: Path) -> str:
    try:
        size = path.stat().st_size
    except OSError as error:
        raise ValidationError(f"{path}: cannot read the file ({error.strerror})",
                              hint="check the path and its permissions") from error
    if size > MAX_DOCUMENT_BYTES:
        raise ValidationError(f"{path} is {size:,} bytes, over the limit of {MAX_DOCUMENT_BYTES:,} bytes",
                              hint="split it into smaller documents")
    with path.open("rb") as handle:
        data = handle.read(MAX_DOCUMENT_BYTES + 1)  # the file may have grown since stat()
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ValidationError(f"{path} is over the limit of {MAX_DOCUMENT_BYTES:,} bytes",
                              hint="split it into smaller documents")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValidationError(f"{path}: not valid UTF-8 at byte offset {error.start}",
                              hint="save the file as UTF-8") from error
    return text.removeprefix("\ufeff")


# --- front matter ----------------------------------------------------------------------------------


def _split_front_matter(text: str, path: Path) -> tuple[dict[str, Any], str]:
    """Split a leading `---` / `key: value` / `---` block from the body; no block means no metadata."""
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return {}, text
    for end in range(1, len(lines)):
        if lines[end].strip() == "---":
            break
    else:
        raise ValidationError(f"{path}: front matter starts with '---' but never ends",
                              hint="close the front matter with a '---' line")
    meta: dict[str, Any] = {}
    for number, line in enumerate(lines[1:end], start=2):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition(":")
        key, value = key.strip(), _unquote(value.strip())
        if not sep or key not in _FRONT_MATTER_KEYS:
            raise ValidationError(f"{path}, line {number}: unexpected front matter {stripped!r}",
                                  hint=f"allowed keys: {', '.join(_FRONT_MATTER_KEYS)}")
        meta[key] = _front_matter_value(key, value, path, number)
    return meta, "".join(lines[end + 1:])


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _front_matter_value(key: str, value: str, path: Path, number: int) -> Any:
    where = f"{path}, line {number}"
    if key == "version":
        try:
            return int(value)
        except ValueError:
            raise ValidationError(f"{where}: version {value!r} is not an integer",
                                  hint="write e.g. 'version: 2'") from None
    if key == "authority":
        try:
            return float(value)
        except ValueError:
            raise ValidationError(f"{where}: authority {value!r} is not a number",
                                  hint="write e.g. 'authority: 0.8'") from None
    if key == "updated_at":
        return parse_timestamp(value, where)
    if key == "visibility":
        return cast(Visibility, value)
    return value


def parse_timestamp(value: str, where: str = "updated_at") -> datetime:
    """An ISO date or datetime as an aware UTC datetime; a date means midnight UTC, naive means UTC."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(f"{where}: {value!r} is not an ISO date or datetime",
                              hint="write e.g. 2025-03-01 or 2025-03-01T09:30:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# --- HTML ------------------------------------------------------------------------------------------

_SKIPPED_TAGS = frozenset({"script", "style", "noscript", "template"})
_BLOCK_TAGS = frozenset({
    "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header", "footer", "main",
    "aside", "nav", "blockquote", "pre", "hr", "dl", "dt", "dd", "figure", "figcaption", "form",
})
_HEADINGS = {f"h{level}": level for level in range(1, 7)}


class _TextExtractor(HTMLParser):
    """Collects visible text as lines; headings become Markdown headings so chunking can see them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.title_parts: list[str] = []
        self.skip_depth = 0
        self.in_title = False

    def _flush(self) -> None:
        line = " ".join("".join(self.current).split())
        if line and line.strip("#").strip():
            self.lines.append(line)
        self.current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        elif tag in _SKIPPED_TAGS:
            self.skip_depth += 1
        elif tag in _HEADINGS:
            self._flush()
            self.current.append("#" * _HEADINGS[tag] + " ")
        elif tag in _BLOCK_TAGS:
            self._flush()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag in _SKIPPED_TAGS:
            self.skip_depth = max(0, self.skip_depth - 1)
        elif tag in _HEADINGS or tag in _BLOCK_TAGS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title_parts.append(data)
        elif self.skip_depth == 0:
            self.current.append(data)


def html_to_text(html: str) -> tuple[str, str]:
    """(title, text) of an HTML page: visible text only, h1-h6 as `#` headings, scripts and styles dropped."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    parser._flush()
    title = " ".join("".join(parser.title_parts).split())
    blocks: list[str] = []
    for line in parser.lines:
        if line.startswith("#") and blocks:
            blocks.append("")
        blocks.append(line)
        if line.startswith("#"):
            blocks.append("")
    return title, "\n".join(blocks).strip() + "\n"

