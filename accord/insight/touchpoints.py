"""Touchpoints: every exchange with a customer, whatever the channel, and what they are about.

A touchpoint source yields `Touch`es. The desk's tickets and messages are one source, on every channel: e-mail,
web form, phone calls, social, API and live chat (a chat is a desk ticket on the channel `chat`, its visitor's
and agents' messages inbound messages and replies). Another source is a function added to
`settings.ACCORD_TOUCHPOINT_SOURCES`: every figure here counts it, with nothing else to change.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from accord.customers.models import ContactPoint
from accord.desk.models import Message, SlaClock, Ticket

from .models import Topic

DEFAULT_SOURCES = ["accord.insight.touchpoints.desk_touches"]
RESPONSE_CLOCKS = (SlaClock.Kind.FIRST_RESPONSE, SlaClock.Kind.NEXT_RESPONSE)


@dataclass(frozen=True)
class Touch:
    """One exchange: in (from the customer) or out (to them), on a channel, between a contact and an agent."""

    account_id: int | None
    at: dt.datetime
    direction: str  # "in" or "out"
    channel: str
    contacts: tuple[str, ...] = ()  # who on the customer's side (names, or addresses we cannot match)
    agent: str | None = None  # the agent's username


def _names_by_address() -> dict[str, str]:
    return dict(ContactPoint.objects.values_list("value", "contact__name"))


def desk_touches(since: dt.datetime, account_id: int | None = None) -> Iterator[Touch]:
    """The desk's messages: inbound ones in, public replies out (internal notes are no touchpoint).

    The contacts are the inbound message's author and its Cc, or a reply's To and Cc, matched to contacts by
    address (a reply with no address, such as a call back, is to the ticket's contact, and so is a chat reply); the
    agent is the reply's author, or the ticket's assignee for inbound messages.
    """
    qs = Message.objects.filter(created_at__gte=since, kind__in=[Message.Kind.INBOUND, Message.Kind.REPLY])
    if account_id is not None:
        qs = qs.filter(ticket__account_id=account_id)
    names = _names_by_address()
    rows = qs.values_list("ticket__account_id", "created_at", "kind", "channel", "author_contact__name",
                          "from_address", "to_addresses", "cc_addresses", "author_user__username",
                          "ticket__assignee__username", "ticket__contact__name")
    for account, at, kind, channel, contact_name, sender, to, cc, author, assignee, ticket_contact in rows.iterator(
        chunk_size=2000
    ):
        if kind == Message.Kind.INBOUND:
            people = [contact_name or names.get(sender.lower(), sender)] if (contact_name or sender) else []
            people += [names.get(str(a).lower(), str(a)) for a in cc or []]
            yield Touch(account, at, "in", channel, tuple(dict.fromkeys(p for p in people if p)), assignee)
            continue
        if channel == Ticket.Channel.CHAT:
            # A chat reply's To is no address but "the visitor in the chat" (desk.outbound.route): the visitor is
            # the chat ticket's contact, known only when the host site vouched for them.
            people = [ticket_contact] if ticket_contact else []
        else:
            people = [names.get(str(a).lower(), str(a)) for a in [*(to or []), *(cc or [])]]
            if not to and ticket_contact:
                people.insert(0, ticket_contact)
        yield Touch(account, at, "out", channel, tuple(dict.fromkeys(p for p in people if p)), author)


def touches(since: dt.datetime, account_id: int | None = None) -> Iterable[Touch]:
    """Every registered source's touchpoints since an instant (settings.ACCORD_TOUCHPOINT_SOURCES)."""
    for dotted in getattr(settings, "ACCORD_TOUCHPOINT_SOURCES", DEFAULT_SOURCES):
        yield from import_string(dotted)(since, account_id)


def week_start(at: dt.datetime) -> dt.date:
    """The Monday (UTC) of an instant's week."""
    day = at.astimezone(dt.UTC).date()
    return day - dt.timedelta(days=day.weekday())


@dataclass
class Volume:
    """Touchpoints per week (Monday, UTC) in and out, overall, per account and per channel."""

    weeks: list[dt.date]
    inbound: list[int]
    outbound: list[int]
    per_account: dict[int, tuple[list[int], list[int]]] = field(default_factory=dict)
    channels: dict[str, list[int]] = field(default_factory=dict)  # channel -> [in, out] over all the weeks

    def by_channel(self) -> list[tuple[str, str, int, int]]:
        """(channel, its label, in, out), the busiest first."""
        labels = dict(Ticket.Channel.choices)
        rows = [(c, str(labels.get(c, c)), i, o) for c, (i, o) in self.channels.items()]
        return sorted(rows, key=lambda r: (-(r[2] + r[3]), r[0]))

    def top(self, n: int = 10) -> list[tuple[int, int, int]]:
        """(account id, in, out) of the n accounts with the most touchpoints, most first."""
        totals = [(pk, sum(i), sum(o)) for pk, (i, o) in self.per_account.items()]
        return sorted(totals, key=lambda t: (-(t[1] + t[2]), t[0]))[:n]


def volume(weeks: int = 12, account_id: int | None = None, now: dt.datetime | None = None) -> Volume:
    """Touchpoints in and out per week over the last `weeks` weeks (this one included)."""
    now = now or timezone.now()
    last = week_start(now)
    starts = [last - dt.timedelta(weeks=weeks - 1 - i) for i in range(weeks)]
    index = {w: i for i, w in enumerate(starts)}
    since = dt.datetime.combine(starts[0], dt.time(), tzinfo=dt.UTC)
    result = Volume(starts, [0] * weeks, [0] * weeks)
    for t in touches(since, account_id):
        i = index.get(week_start(t.at))
        if i is None:
            continue
        series = result.inbound if t.direction == "in" else result.outbound
        series[i] += 1
        result.channels.setdefault(t.channel, [0, 0])[0 if t.direction == "in" else 1] += 1
        if t.account_id is not None:
            ins, outs = result.per_account.setdefault(t.account_id, ([0] * weeks, [0] * weeks))
            (ins if t.direction == "in" else outs)[i] += 1
    return result


@dataclass(frozen=True)
class Timeliness:
    """Response clocks (first and next response) met in time and breached."""

    met: int
    breached: int

    @property
    def rate(self) -> float | None:
        done = self.met + self.breached
        return self.met / done if done else None

    @property
    def percent(self) -> int | None:
        return None if self.rate is None else round(self.rate * 100)


def timeliness(since: dt.datetime, account_id: int | None = None) -> Timeliness:
    """The timely-response rate against the agreement: the desk's response clocks met and breached since."""
    qs = SlaClock.objects.filter(kind__in=RESPONSE_CLOCKS, started_at__gte=since)
    if account_id is not None:
        qs = qs.filter(ticket__account_id=account_id)
    breached = qs.filter(breached_at__isnull=False).count()
    met = qs.filter(status=SlaClock.Status.MET, breached_at__isnull=True).count()
    return Timeliness(met, breached)


def timeliness_by_account(since: dt.datetime) -> dict[int, Timeliness]:
    """`timeliness` for every account at once (two grouped queries)."""
    qs = SlaClock.objects.filter(kind__in=RESPONSE_CLOCKS, started_at__gte=since, ticket__account__isnull=False)
    breached: Counter[int] = Counter()
    met: Counter[int] = Counter()
    for account, status, was_breached in qs.values_list("ticket__account_id", "status", "breached_at"):
        if was_breached is not None:
            breached[account] += 1
        elif status == SlaClock.Status.MET:
            met[account] += 1
    return {pk: Timeliness(met[pk], breached[pk]) for pk in set(met) | set(breached)}


@dataclass
class Graph:
    """Who talks with whom: (contact, agent) -> number of touchpoints between them."""

    edges: Counter[tuple[str, str]]

    @property
    def contacts(self) -> list[str]:
        return sorted({c for c, _a in self.edges}, key=lambda c: (-self.weight(contact=c), c))

    @property
    def agents(self) -> list[str]:
        return sorted({a for _c, a in self.edges}, key=lambda a: (-self.weight(agent=a), a))

    def weight(self, contact: str | None = None, agent: str | None = None) -> int:
        return sum(n for (c, a), n in self.edges.items() if contact in (None, c) and agent in (None, a))


def graph(since: dt.datetime, account_id: int | None = None, limit: int = 12) -> Graph:
    """Contacts to agents from the touchpoints' To/From/Cc and assignments; the `limit` busiest pairs' people."""
    edges: Counter[tuple[str, str]] = Counter()
    for t in touches(since, account_id):
        if t.agent:
            for person in t.contacts:
                edges[(person, t.agent)] += 1
    busiest = dict(edges.most_common(limit * 2))
    return Graph(Counter(busiest))


# -- topics -----------------------------------------------------------------------------------------------

MAX_TICKETS = 5000
MIN_TICKETS = 10


def documents(tickets: list[Ticket]) -> list[str]:
    first_body: dict[int, str] = {}
    ids = [t.pk for t in tickets]
    for i in range(0, len(ids), 900):
        for ticket_id, body in Message.objects.filter(ticket_id__in=ids[i : i + 900], kind=Message.Kind.INBOUND)\
                .order_by("ticket_id", "created_at", "id").values_list("ticket_id", "body_text"):
            first_body.setdefault(ticket_id, body[:2000])
    return [f"{t.subject} {t.subject} {first_body.get(t.pk, '')}" for t in tickets]  # the subject counts double


def cluster(documents: list[str], n_topics: int | None = None, seed: int = 0) -> tuple[list[int], list[list[str]]]:
    """Cluster texts by their TF-IDF vectors (k-means); each cluster named by its centroid's top terms."""
    from sklearn.cluster import KMeans
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(stop_words="english", max_features=5000, min_df=2 if len(documents) > 50 else 1,
                                 token_pattern=r"(?u)\b[^\W\d_]{3,}\b", sublinear_tf=True)
    matrix = vectorizer.fit_transform(documents)
    k = n_topics or max(2, min(8, len(documents) // 10))
    k = min(k, matrix.shape[0])
    model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(matrix)
    terms = vectorizer.get_feature_names_out()
    names = [[str(terms[j]) for j in centre.argsort()[::-1][:3] if centre[j] > 0] for centre in model.cluster_centers_]
    return [int(label) for label in model.labels_], names


def topics_of(account_id: int | None = None) -> list[tuple[Topic, int]]:
    """(topic, tickets) for all tickets or one account's, the biggest first."""
    counts: dict[int, int] = defaultdict(int)
    through = Topic.tickets.through.objects.all()
    if account_id is not None:
        through = through.filter(ticket__account_id=account_id)
    for topic_id in through.values_list("topic_id", flat=True):
        counts[topic_id] += 1
    found = Topic.objects.in_bulk(list(counts))
    return sorted(((found[pk], n) for pk, n in counts.items()), key=lambda p: (-p[1], p[0].name))

