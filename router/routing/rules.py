"""The user's rules: may this contact method be told about this event? Pure functions.

Each per-method rule looks at one :class:`Candidate` and returns the reason to
skip it, or ``None``. ``RULES`` is the order they are asked in; the first
reason found is the one reported. Two steps look at more than one method and
come after: the channel preference (:func:`preferred`) and the rate limit
(:func:`within_rate_limits`), which also needs what was sent recently.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

from router.directory.models import ContactMethod, Directory, User
from router.directory.targets import STRICT, TargetPolicy, target_problem
from router.directory.webhook_headers import headers_problem
from router.pages.tokens import AckLinks
from schemas import SEVERITY_RANK, AlertEvent, Reason, Transport

#: Transports in the order used after a user's own channel order runs out.
DEFAULT_CHANNEL_ORDER: tuple[Transport, ...] = ("sms", "email", "webhook")

OptOuts = Collection[tuple[str, str]]


@dataclass(frozen=True)
class RoutingOptions:
    """The site's settings the rules and the job builders need, taken once from
    :meth:`router.settings.Settings.routing_options` and given to every path
    (routing, held delivery, failover) alike."""

    sms_max_segments: int = 3
    require_verified: bool = False
    target_policy: TargetPolicy = STRICT
    #: Signed ack links on every job (``ROUTER_ACK_BASE_URL`` and ``ROUTER_ACK_SECRET``).
    ack_links: AckLinks | None = None


@dataclass(frozen=True)
class Candidate:
    """One contact method considered for one event.

    ``now`` is when the decision is taken (a mute-until is read against it);
    ``quiet_at`` is the instant quiet hours are judged at: the event's
    ``occurred_at`` when it is routed (``None``), the moment of delivery or
    failover on the later paths.
    """

    event: AlertEvent
    user: User
    method: ContactMethod
    now: datetime
    opt_outs: OptOuts = frozenset()
    require_verified: bool = False
    target_policy: TargetPolicy = STRICT
    quiet_at: datetime | None = None


def candidate(
    event: AlertEvent,
    user: User,
    method: ContactMethod,
    directory: Directory,
    options: RoutingOptions,
    now: datetime,
    *,
    later: bool = False,
) -> Candidate:
    """The rule input for ``method`` of ``user`` and ``event``: the one place it is built,
    so routing, held delivery and failover read the site's options alike.

    ``later``: the page is decided after it was routed (a held page falling due, a
    failover), so time-dependent rules (quiet hours, mute-until) are judged at ``now``.
    """
    return Candidate(
        event=event,
        user=user,
        method=method,
        now=now,
        opt_outs=directory.opt_outs,
        require_verified=options.require_verified,
        target_policy=options.target_policy,
        quiet_at=now if later else None,
    )


Rule = Callable[[Candidate], Reason | None]


def _at_least(severity: str, threshold: str) -> bool:
    return SEVERITY_RANK[severity] >= SEVERITY_RANK[threshold]


def disabled(c: Candidate) -> Reason | None:
    """A disabled method gets nothing."""
    return "disabled" if c.method.disabled else None


def webhook_problem(method: ContactMethod, policy: TargetPolicy) -> str | None:
    """Why the router must not call the webhook ``method`` under ``policy`` (its URL
    points inside the network or breaks the URL rules, or a header breaks the header
    rules), or ``None``; also ``None`` for other transports."""
    if method.transport != "webhook":
        return None
    return webhook_target_problem(method.value, method.webhook_headers, policy)


def webhook_target_problem(
    url: str, headers: Mapping[str, str], policy: TargetPolicy
) -> str | None:
    """:func:`webhook_problem` of a webhook's URL and headers: the URL's answer is cached
    per site (:func:`router.directory.targets.target_problem`), the headers' per set."""
    problem = target_problem(url, policy)
    if problem is None and headers:
        problem = _headers_problem(tuple(headers.items()))
    return problem


@lru_cache(maxsize=4096)
def _headers_problem(headers: tuple[tuple[str, str], ...]) -> str | None:
    return headers_problem(dict(headers))


def unsafe_target(c: Candidate) -> Reason | None:
    """A webhook the router must not call (:func:`webhook_problem`) gets nothing, however
    it was stored (before the write-time checks existed, or by SQL)."""
    return "unsafe_target" if webhook_problem(c.method, c.target_policy) else None


def opted_out(c: Candidate) -> Reason | None:
    """An address on the opt-out list gets nothing, whichever user's method it is."""
    return "opted_out" if (c.method.transport, c.method.value) in c.opt_outs else None


def unverified(c: Candidate) -> Reason | None:
    """Unverified methods are skipped only when the router requires verification."""
    return "unverified" if c.require_verified and not c.method.verified else None


def muted(c: Candidate) -> Reason | None:
    """Muted until cleared, or until ``mute_until``; a past (or exactly now) mute-until is over."""
    until = c.method.mute_until
    return "muted" if c.method.muted or (until is not None and until > c.now) else None


def suppressed(c: Candidate) -> Reason | None:
    """NodePing's per-address suppress flags: one per event kind, or all."""
    m = c.method
    flags = {
        "up": m.suppress_up,
        "down": m.suppress_down,
        "first": m.suppress_first,
        "diagnostic": m.suppress_diagnostic,
    }
    return "suppressed" if m.suppress_all or flags[c.event.kind] else None


def below_min_severity(c: Candidate) -> Reason | None:
    """A method with a minimum severity gets only events at or above it."""
    floor = c.method.min_severity
    return "below_min_severity" if floor and not _at_least(c.event.severity, floor) else None


def in_quiet_window(user: User, at: datetime) -> bool:
    """Whether ``at`` falls in the user's daily quiet window, read on the user's local clock.

    The window is [start, end); when start > end it crosses midnight.
    """
    return in_window(user.quiet_hours_start, user.quiet_hours_end, user.timezone, at)


def in_window(start: time | None, end: time | None, timezone: str, at: datetime) -> bool:
    """:func:`in_quiet_window` from the user's window and zone as values."""
    if start is None or end is None:
        return False
    local: time = at.astimezone(ZoneInfo(timezone)).time().replace(tzinfo=None)
    if start < end:
        return start <= local < end
    return local >= start or local < end


def _first_instant_at(day: date, wall: time, zone: ZoneInfo) -> tuple[datetime, ...]:
    """The instants, in UTC and in order, at which the local clock of ``zone`` shows
    ``wall`` on ``day``: one normally, two in the repeated hour of an autumn fold
    (``fold=0`` then ``fold=1``), and in a spring-forward gap, which the clock
    skips, the first instant after the gap."""
    first = datetime.combine(day, wall, tzinfo=zone)
    second = first.replace(fold=1)
    earlier, later = sorted((first.astimezone(UTC), second.astimezone(UTC)))
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != first.replace(tzinfo=None):
        # A gap: the wall time never shows. The offset changes once between the two
        # readings of it; the first second after the change is where the clock resumes.
        before = earlier.astimezone(zone).utcoffset()
        low, high = 0, int((later - earlier).total_seconds())
        while low < high:
            middle = (low + high) // 2
            if (earlier + timedelta(seconds=middle)).astimezone(zone).utcoffset() == before:
                low = middle + 1
            else:
                high = middle
        return (earlier + timedelta(seconds=low),)
    return (earlier, later) if earlier != later else (earlier,)


def quiet_window_end(user: User, at: datetime) -> datetime:
    """The end of the quiet window ``at`` falls in (or ``at`` itself when it is not in
    one): the first instant after ``at`` at which the user's local clock shows
    ``quiet_hours_end``, so across a DST change the page still comes at, say, 07:00
    local. Wall-clock arithmetic goes through :mod:`zoneinfo` with ``fold``: an end
    time that a spring-forward gap skips means the first instant after the gap; an
    end time in the repeated autumn hour, reached on its second pass, is the second
    reading (never an instant before ``at``)."""
    return window_end(user.quiet_hours_start, user.quiet_hours_end, user.timezone, at)


def window_end(start: time | None, end: time | None, timezone: str, at: datetime) -> datetime:
    """:func:`quiet_window_end` from the user's window and zone as values."""
    if end is None or not in_window(start, end, timezone, at):
        return at
    zone = ZoneInfo(timezone)
    day = at.astimezone(zone).date()
    for offset in range(3):
        for instant in _first_instant_at(day + timedelta(days=offset), end, zone):
            if instant > at:
                return instant
    raise AssertionError("a wall-clock time recurs within three days")  # pragma: no cover


def quiet_hours(c: Candidate) -> Reason | None:
    """No non-urgent events in the user's quiet hours; severities at or above the bypass pass."""
    if _at_least(c.event.severity, c.user.quiet_bypass):
        return None
    at = c.quiet_at if c.quiet_at is not None else c.event.occurred_at
    assert at is not None, "decode fills occurred_at"
    return "quiet_hours" if in_quiet_window(c.user, at) else None


RULES: Sequence[Rule] = (
    disabled,
    unsafe_target,
    opted_out,
    unverified,
    muted,
    suppressed,
    below_min_severity,
    quiet_hours,
)


def skip_reason(candidate: Candidate, rules: Sequence[Rule] = RULES) -> Reason | None:
    """The first rule's reason to skip ``candidate``, or ``None`` when it may get a job."""
    for rule in rules:
        reason = rule(candidate)
        if reason is not None:
            return reason
    return None


def channel_order(user: User) -> tuple[Transport, ...]:
    """The user's channel order, followed by any transport it leaves out."""
    own = tuple(dict.fromkeys(user.channel_order))
    return own + tuple(t for t in DEFAULT_CHANNEL_ORDER if t not in own)


def preferred(user: User, event: AlertEvent, eligible: Sequence[ContactMethod]) -> set[str]:
    """Ids of the eligible methods that get the event under the user's delivery mode.

    Mode ``all``, or a ``critical`` event: every eligible method. Mode
    ``preferred``: the first transport in the channel order with an eligible
    method, and within it the primary (else the oldest eligible) method.
    ``eligible`` must be in creation order.
    """
    if user.delivery_mode == "all" or event.severity == "critical":
        return {m.id for m in eligible}
    for transport in channel_order(user):
        of_transport = [m for m in eligible if m.transport == transport]
        if of_transport:
            chosen = next((m for m in of_transport if m.is_primary), of_transport[0])
            return {chosen.id}
    return set()


@dataclass(frozen=True)
class RateLimit:
    """At most ``count`` jobs per contact method in any ``window_seconds`` (one bucket)."""

    count: int
    window_seconds: int


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str, units: str = "smhdw") -> int:
    """``120s``, ``2m``, ``1h``, ``7d`` or ``1w`` (or plain seconds) -> seconds, with
    only ``units`` allowed; ValueError if not. The one duration parser of settings
    and the command line."""
    text = text.strip()
    unit = text[-1:] if text[-1:] in _UNITS else "s"
    number = text[:-1] if text[-1:] in _UNITS else text
    if unit not in units or not number.strip().isdigit() or int(number) < 1:
        raise ValueError(f"{text!r} is not a duration such as 120s, 2m, 1h or 7d")
    return int(number) * _UNITS[unit]


def parse_buckets(text: str) -> tuple[RateLimit, ...]:
    """``1/60s,5/900s,12/1h`` -> buckets; empty text -> none. ValueError with the fix."""
    buckets = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        count, sep, window = part.partition("/")
        try:
            # Windows of seconds to hours: every send is kept as long as the longest.
            seconds = parse_duration(window, units="smh")
        except ValueError:
            seconds = -1
        if not sep or not count.strip().isdigit() or seconds < 0:
            raise ValueError(f"{part!r} is not COUNT/WINDOW, e.g. 5/900s, 5/15m or 12/1h")
        bucket = RateLimit(int(count), seconds)
        if bucket.count < 1 or bucket.window_seconds < 1:
            raise ValueError(f"{part!r}: the count and the window must be at least 1")
        buckets.append(bucket)
    return tuple(buckets)


Limits = Mapping[str, Sequence[RateLimit]]


class Send(NamedTuple):
    """A job that would be sent, as the rate limiter sees it (a named tuple: one is
    made for every job routed)."""

    job_id: str
    contact_method_id: str
    transport: Transport
    critical: bool


@dataclass
class RateDecision:
    """Which jobs may go now, and for each method held back, when every bucket allows."""

    allowed: set[str] = field(default_factory=set)
    retry_at: dict[str, datetime] = field(default_factory=dict)


def next_allowed(
    history: Sequence[datetime], buckets: Sequence[RateLimit], now: datetime
) -> datetime:
    """The first instant at or after ``now`` at which one more send fits every bucket,
    given the method's earlier sends (``history``, any order)."""
    newest_first = sorted(history, reverse=True)
    at = now
    for bucket in buckets:
        window = timedelta(seconds=bucket.window_seconds)
        recent = [sent for sent in newest_first if sent > now - window]
        if len(recent) >= bucket.count:
            # When the count-th newest send leaves the window, one more fits.
            at = max(at, recent[bucket.count - 1] + window)
    return at


def within_rate_limits(
    sends: Iterable[Send],
    history: Mapping[str, Sequence[datetime]],
    already_counted: Collection[str],
    limits: Limits,
    now: datetime,
) -> RateDecision:
    """Which jobs may go out, in the order given, under every bucket of their transport.

    ``history`` is when each method's recent jobs went out (from every router);
    ``already_counted`` are job ids reserved before (a redelivered batch), which
    are allowed again without counting twice. Critical jobs are always allowed,
    and they count. A method held back gets the instant every bucket allows again.
    """
    sent = {method: list(times) for method, times in history.items()}
    decision = RateDecision()
    for send in sends:
        if send.job_id in already_counted:
            decision.allowed.add(send.job_id)
            continue
        times = sent.setdefault(send.contact_method_id, [])
        buckets = limits[send.transport]
        if send.critical or next_allowed(times, buckets, now) <= now:
            decision.allowed.add(send.job_id)
            times.append(now)
        else:
            decision.retry_at[send.contact_method_id] = next_allowed(times, buckets, now)
    return decision
