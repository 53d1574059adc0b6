"""Knowledge notes: a folder of Markdown and text files, split into passages, searched with BM25.

The people who run the bot drop notes in the folder named by ``CHIMEIN_KNOWLEDGE_DIR``;
files at its top level are shared by every place, a subfolder named by a Discord server
id or channel id holds notes for that place only::

    notes/
      club.md                    everywhere
      123456789012345678/        only in this server (or channel)
        rules.md

Files are split by heading and paragraph into passages of at most
``MAX_PASSAGE_TOKENS`` (a paragraph that is longer is cut between sentences), each
passage written on one line as ``Heading: text``. The passages are indexed with
``bm25s``; the folder is looked at again on every search and re-indexed when a file
was added, removed or changed (size or modification time).

``notes_block`` is the one form notes take in the model's text (a system turn at the
start of the window, see models/template.py): ``Notes:`` and one ``- passage`` line
each. Training, evaluation and the bot all render notes through it.

Synchronous and not thread-safe, like the engine: the bot calls it on its model thread.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

KNOWLEDGE_DIR_ENV = "CHIMEIN_KNOWLEDGE_DIR"
NOTE_SUFFIXES = (".md", ".markdown", ".txt")
NOTES_HEADER = "Notes:"
MAX_PASSAGE_TOKENS = 120
MAX_NOTES = 3  # passages put in front of the model per decision
QUERY_TURNS = 3  # the newest people's messages a search reads
MAX_REMEMBERED_CHOICES = 256  # conversations whose chosen notes are kept (oldest forgotten)

_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ROUGH_TOKEN = re.compile(r"\w+|[^\w\s]")


def notes_block(passages: Iterable[str]) -> str | None:
    """The notes as the model reads them: ``Notes:`` then ``- passage`` lines; None without notes.

    A passage is written on one line (its own line breaks become spaces), so a note
    can neither end the block nor start a line of its own.
    """
    lines = [" ".join(passage.split()) for passage in passages]
    lines = [line for line in lines if line]
    if not lines:
        return None
    return "\n".join([NOTES_HEADER, *(f"- {line}" for line in lines)])


def rough_token_count(text: str) -> int:
    """Words and punctuation marks: about what a BPE tokenizer makes of English, never far under."""
    return len(_ROUGH_TOKEN.findall(text))


# -- splitting -------------------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    """One searchable piece of a note: its text, the file it came from, and the place it belongs to.

    ``place`` is "" for the shared notes at the top of the folder, else the name of the
    subfolder (a server or channel id). ``number`` counts the file's passages from 1.
    """

    text: str
    source: str
    place: str = ""
    number: int = 1

    @property
    def label(self) -> str:
        """How the decision log names it: ``club.md#2``."""
        return f"{self.source}#{self.number}"


def split_passages(text: str, max_tokens: int = MAX_PASSAGE_TOKENS,
                   count_tokens: Callable[[str], int] = rough_token_count) -> list[str]:
    """A note -> passages, one per paragraph, each prefixed with the headings it sits under.

    Headings start a new paragraph; blank lines end one; list items and wrapped lines
    join their paragraph. A paragraph over ``max_tokens`` is cut between sentences
    (a single sentence over the bound, between words).
    """
    passages: list[str] = []
    headings: list[tuple[int, str]] = []
    paragraph: list[str] = []

    def flush() -> None:
        body = " ".join(" ".join(paragraph).split())
        paragraph.clear()
        if not body:
            return
        prefix = " > ".join(title for _, title in headings)
        for piece in _bounded(body, max_tokens - count_tokens(prefix) - 1, count_tokens):
            passages.append(f"{prefix}: {piece}" if prefix else piece)

    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            flush()
            level = len(heading.group(1))
            headings = [(lvl, title) for lvl, title in headings if lvl < level]
            if heading.group(2):
                headings.append((level, heading.group(2)))
        elif line.strip():
            paragraph.append(line.strip())
        else:
            flush()
    flush()
    return passages


def _bounded(body: str, max_tokens: int, count_tokens: Callable[[str], int]) -> list[str]:
    max_tokens = max(max_tokens, 16)
    if count_tokens(body) <= max_tokens:
        return [body]
    pieces: list[str] = []
    current = ""
    for sentence in _SENTENCE_END.split(body):
        for part in _words_bounded(sentence, max_tokens, count_tokens):
            candidate = f"{current} {part}".strip()
            if current and count_tokens(candidate) > max_tokens:
                pieces.append(current)
                candidate = part
            current = candidate
    if current:
        pieces.append(current)
    return pieces


def _words_bounded(sentence: str, max_tokens: int, count_tokens: Callable[[str], int]) -> list[str]:
    if count_tokens(sentence) <= max_tokens:
        return [sentence]
    parts, current = [], []
    for word in sentence.split():
        if current and count_tokens(" ".join([*current, word])) > max_tokens:
            parts.append(" ".join(current))
            current = []
        current.append(word)
    if current:
        parts.append(" ".join(current))
    return parts


# -- the folder and its index -------------------------------------------------------------


@dataclass
class NotesReport:
    """What ``python -m bot check`` prints: the folder, files and passages indexed, files that failed."""

    folder: str
    files: int = 0
    passages: int = 0
    places: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def summary(self) -> str:
        text = f"{self.folder}: {self.files} files, {self.passages} passages"
        if self.places:
            text += f" (place folders: {', '.join(self.places)})"
        for path, reason in self.unreadable:
            text += f"\n  could not read {path}: {reason}"
        return text


class NotesError(ValueError):
    """The knowledge folder cannot be used at all (missing, not a folder)."""


class Notes:
    """The notes of one folder: passages, a BM25 index over them, and search by place."""

    def __init__(self, folder: str | Path, max_passage_tokens: int = MAX_PASSAGE_TOKENS,
                 count_tokens: Callable[[str], int] = rough_token_count):
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise NotesError(f"{KNOWLEDGE_DIR_ENV}={folder}: not a folder")
        self.max_passage_tokens = max_passage_tokens
        self.count_tokens = count_tokens
        self.passages: list[Passage] = []
        self._signature: dict[str, tuple[int, int]] | None = None
        self._report = NotesReport(str(self.folder))
        self._retriever = None
        self._stemmer = None
        self._current: set[Passage] = set()
        self._choices: dict[Hashable, list[Passage]] = {}
        self.refresh()

    @classmethod
    def from_environment(cls, environ: os._Environ | dict = os.environ) -> Notes | None:
        """The notes named by ``CHIMEIN_KNOWLEDGE_DIR``, or None when it is not set."""
        folder = (environ.get(KNOWLEDGE_DIR_ENV) or "").strip()
        return cls(folder) if folder else None

    def report(self) -> NotesReport:
        self.refresh()
        return self._report

    def refresh(self) -> bool:
        """Re-read and re-index the folder if any note changed since the last look; True if it did."""
        files = self._note_files()
        signature = {}
        for path in files:
            try:
                stat = path.stat()
            except OSError:
                continue
            signature[str(path)] = (stat.st_mtime_ns, stat.st_size)
        if signature == self._signature:
            return False
        self._signature = signature
        self._index(files)
        return True

    def search(self, query: str, places: Sequence[Hashable] = (), k: int = MAX_NOTES) -> list[Passage]:
        """The up to ``k`` passages that best match ``query``, from the shared notes and ``places``.

        Only passages that share at least one word (after stemming, without English
        stop words) with the query are returned, best first.
        """
        self.refresh()
        if self._retriever is None or not query.strip():
            return []
        import numpy as np

        tokens = self._tokenize([query])[0]
        if not tokens:
            return []
        scores = self._retriever.get_scores(tokens)
        allowed = {""} | {str(place) for place in places if place is not None}
        mask = np.array([p.place in allowed for p in self.passages])
        scores = np.where(mask, scores, 0.0)
        best = np.argsort(-scores, kind="stable")[:k]
        return [self.passages[i] for i in best if scores[i] > 0]

    def for_window(self, texts: Sequence[str], key: Hashable, places: Sequence[Hashable] = (),
                   k: int = MAX_NOTES) -> list[Passage]:
        """The passages to show the model for a conversation whose newest people's messages are ``texts``.

        The newest message is searched alone (it is what a decision is about); only
        when it matches nothing and nothing is shown yet do the last ``QUERY_TURNS``
        messages together pick. Sticky, so the cached prefix survives: the
        conversation keeps the passages it was shown while the best match is still
        among them or nothing matches; the choice changes only when a passage not
        shown becomes the best match. ``key`` names the conversation (a channel id).
        """
        shown = [p for p in self._choices.get(key, []) if p in self._current]
        found = self.search(texts[-1], places, k) if texts else []
        if not found and not shown:
            found = self.search(" ".join(texts[-QUERY_TURNS:]), places, k)
        if found and found[0] not in shown:
            shown = found
        self._choices.pop(key, None)
        self._choices[key] = shown
        while len(self._choices) > MAX_REMEMBERED_CHOICES:
            self._choices.pop(next(iter(self._choices)))
        return list(shown)

    def forget(self, key: Hashable) -> None:
        self._choices.pop(key, None)

    # -- internals ---------------------------------------------------------------------

    def _note_files(self) -> list[Path]:
        files = []
        for root, dirs, names in os.walk(self.folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            files.extend(Path(root) / n for n in sorted(names)
                         if n.lower().endswith(NOTE_SUFFIXES) and not n.startswith("."))
        return files

    def _index(self, files: list[Path]) -> None:
        passages, unreadable, read = [], [], 0
        for path in files:
            relative = path.relative_to(self.folder)
            place = relative.parts[0] if len(relative.parts) > 1 else ""
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                unreadable.append((str(relative), "not UTF-8 text"))
                continue
            except OSError as error:
                unreadable.append((str(relative), error.strerror or str(error)))
                continue
            read += 1
            pieces = split_passages(text, self.max_passage_tokens, self.count_tokens)
            passages.extend(Passage(piece, relative.as_posix(), place, n) for n, piece in enumerate(pieces, 1))
        self.passages = passages
        self._current = set(passages)
        places = sorted({p.place for p in passages} - {""})
        self._report = NotesReport(str(self.folder), read, len(passages), places, unreadable)
        self._retriever = None
        if passages:
            import bm25s

            self._retriever = bm25s.BM25()
            self._retriever.index(self._tokenize([p.text for p in passages]), show_progress=False)

    def _tokenize(self, texts: list[str]):
        import bm25s

        if self._stemmer is None:
            import Stemmer

            self._stemmer = Stemmer.Stemmer("english")
        return bm25s.tokenize(texts, stopwords="en", stemmer=self._stemmer.stemWords,
                              show_progress=False, return_ids=False)
