"""Full-text search over ticket subjects and message bodies, on the database in use.

PostgreSQL: `websearch_to_tsquery('english', ...)` against GIN expression indexes on `to_tsvector('english',
subject)` and `to_tsvector('english', body_text)`, ranked with `ts_rank`. SQLite: FTS5 tables kept in step by
triggers (migration 0006), ranked with `bm25`, the text turned into quoted terms so that no FTS5 syntax
(`AND`, `NEAR(`, `*`, quotes, parentheses) can reach the query parser.

A frequent word matches most of a million messages: ranking them all would take seconds. So each search looks
at the newest `CANDIDATES` (500) matching messages and the newest `CANDIDATES` matching subjects, ranks those, and
groups them by ticket; a ticket whose subject matches ranks first. The page says when that cap was reached.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import QuerySet

from .models import Message, Ticket

CANDIDATES = 500  # newest matching messages (and subjects) ranked per search
MAX_TEXT = 500  # characters of a search that are used; the rest is ignored (and said)
MAX_TERMS = 12
SUBJECT_BONUS = 10.0
WORD = re.compile(r"\w+", re.UNICODE)


@dataclass
class Results:
    """Tickets matching a search, best first, restricted to the queryset it was given."""

    text: str
    ids: list[int] = field(default_factory=list)
    message_of: dict[int, int] = field(default_factory=dict)  # ticket id -> its best matching message id
    capped: bool = False  # a cap on candidates was reached: older matches may be missing
    note: str = ""  # said above the results (nothing to search for, text cut)

    def snippets(self, ticket_ids: list[int], width: int = 70) -> dict[int, str]:
        """A short extract around the first search word, of each given ticket's best matching message."""
        wanted = {self.message_of[t]: t for t in ticket_ids if t in self.message_of}
        words = [w.lower() for w in terms(self.text)]
        out: dict[int, str] = {}
        for pk, body in Message.objects.filter(pk__in=wanted).values_list("pk", "body_text"):
            low = body.lower()
            at = min((i for i in (low.find(w[:5]) for w in words) if i >= 0), default=0)
            start = max(0, at - width // 2)
            text = " ".join(body[start:start + width * 2].split())
            out[wanted[pk]] = ("…" if start else "") + text + ("…" if start + width * 2 < len(body) else "")
        return out


def terms(text: str) -> list[str]:
    """The words of a search, without any query syntax."""
    return WORD.findall(text.replace("\x00", " ")[:MAX_TEXT])[:MAX_TERMS]


def search(queryset: QuerySet[Ticket], text: str) -> Results:
    """The tickets of `queryset` whose subject or messages match `text`, best first (see the module's doc)."""
    results = Results(text=text)
    words = terms(text)
    if not words:
        results.note = "Type a word to search for."
        return results
    if len(text) > MAX_TEXT or len(WORD.findall(text)) > MAX_TERMS:
        results.note = f"Only the first {MAX_TERMS} words (or {MAX_TEXT} characters) of the search were used."
    if connection.vendor == "postgresql":
        subjects, messages = _postgres(text.replace("\x00", " ")[:MAX_TEXT])
    else:
        subjects, messages = _sqlite(words)
    results.capped = len(subjects) >= CANDIDATES or len(messages) >= CANDIDATES
    score = {ticket_id: SUBJECT_BONUS + rank for ticket_id, rank in subjects}
    best: dict[int, tuple[float, int]] = {}
    for message_id, ticket_id, rank in messages:
        if ticket_id not in best or rank > best[ticket_id][0]:
            best[ticket_id] = (rank, message_id)
    for ticket_id, (rank, message_id) in best.items():
        results.message_of[ticket_id] = message_id
        score[ticket_id] = score.get(ticket_id, 0.0) + rank
    allowed = set(queryset.filter(pk__in=list(score)).values_list("pk", flat=True)) if score else set()
    results.ids = sorted(allowed, key=lambda pk: (-score[pk], -pk))
    return results


def _postgres(text: str) -> tuple[list[tuple[int, float]], list[tuple[int, int, float]]]:
    # The query inline (not in a CTE): the planner folds it to a constant and reads the index's word statistics,
    # so a word in most messages walks the newest rows by id, and a rare one goes through the GIN index.
    query = "websearch_to_tsquery('english'::regconfig, %s)"
    with connection.cursor() as cur:
        cur.execute(
            f"SELECT id, ts_rank(to_tsvector('english'::regconfig, subject), {query}) FROM desk_ticket "
            f"WHERE to_tsvector('english'::regconfig, subject) @@ {query} ORDER BY id DESC LIMIT %s",
            [text, text, CANDIDATES],
        )
        subjects = [(int(pk), float(rank)) for pk, rank in cur.fetchall()]
        cur.execute(
            f"SELECT id, ticket_id, ts_rank(to_tsvector('english'::regconfig, body_text), {query}) FROM desk_message "
            f"WHERE to_tsvector('english'::regconfig, body_text) @@ {query} ORDER BY id DESC LIMIT %s",
            [text, text, CANDIDATES],
        )
        messages = [(int(pk), int(t), float(rank)) for pk, t, rank in cur.fetchall()]
    return subjects, messages


def _sqlite(words: list[str]) -> tuple[list[tuple[int, float]], list[tuple[int, int, float]]]:
    # Each word quoted (a \w+ word holds no quote), joined by spaces: FTS5's implicit AND, no operators.
    match = " ".join(f'"{w}"' for w in words)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT rowid, -bm25(desk_ticket_fts) FROM desk_ticket_fts WHERE desk_ticket_fts MATCH %s "
            "ORDER BY rowid DESC LIMIT %s",
            [match, CANDIDATES],
        )
        subjects = [(int(pk), float(rank)) for pk, rank in cur.fetchall()]
        cur.execute(
            "SELECT f.rowid, m.ticket_id, -bm25(desk_message_fts) FROM desk_message_fts f "
            "JOIN desk_message m ON m.id = f.rowid WHERE desk_message_fts MATCH %s ORDER BY f.rowid DESC LIMIT %s",
            [match, CANDIDATES],
        )
        messages = [(int(pk), int(t), float(rank)) for pk, t, rank in cur.fetchall()]
    return subjects, messages
