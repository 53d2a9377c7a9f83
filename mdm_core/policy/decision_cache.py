"""The decision cache: :class:`DecisionCache`, a bounded memo in front of
:func:`mdm_core.policy.engine.evaluate`.

At a few hundred rules one evaluation costs ~100 µs (p99 ~400 µs); the same device asks for
the same application again and again between two check-ins. The cache keeps, per
(device id, application), the last evaluation and every input it was computed from:

- the policy set in force (the very :class:`CompiledPolicySet` object: a reload makes a new
  one, so the policy-set version is its identity),
- the user (id, effective groups, active: the group set IS the groups version),
- the device record (status included), the posture (equality; the same object is free), the
  posture age given, and the rule-failure times.

A hit requires ALL of them to be equal to the request's, so a stale entry can never be
returned whatever the caller forgets to invalidate; invalidation only frees memory early.

Time. A decision depends on the clock (DESIGN.md section 3): the posture ages, grace stages
escalate, a ``min_security_patch_level`` given as an age compares with today's date, and a
CEL condition may read ``now``. Each entry stores ``[computed_at, valid_until)``, the window in
which the engine would give the same answer except for the stamped ``evaluated_at`` and
``posture_age`` (re-stamped on a hit). ``valid_until`` is the earliest of:

- the end of freshness: ``collected_at + min(max_posture_age)`` of the applicable policies
  (only when the age is computed from the clock, i.e. ``posture_age`` is ``None``);
- the next grace escalation of any failing rule (its ``escalates_at``);
- the next UTC midnight when an applicable rule checks the patch level by age.

A caller that gives the age (the access evaluator counts it from when the server received the
report) matches on an equal age, or on an equal *anchor* ``now - posture_age`` while
``anchor + min(max_posture_age)`` has not passed: a repeat between two reports then hits
although its age grew by the time since.

A rule failing with no recorded first failure "fails now": its stage is the one at elapsed
zero whatever the time, and only its ``first_failed_at``/``escalates_at`` stamps follow the
clock, so a hit re-stamps them too. Not cached at all (evaluated every time): a decision with
a stale-posture reason (its message counts seconds), an evaluation error, and any scope where
an applicable rule is a CEL condition reading ``now``. A request earlier than the entry's
``computed_at`` is a miss.

Bounded (LRU, ``max_entries``) and thread safe (one lock, held only for dict operations; the
engine runs outside it). :meth:`DecisionCache.invalidate_device` (``posture.reported``,
device status change), :meth:`DecisionCache.invalidate_user` (membership or account change)
and :meth:`DecisionCache.clear` (policy reload) are what the event wiring calls.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from mdm_core.domain.model import DeviceRecord
from mdm_core.policy.cel import CelCondition
from mdm_core.policy.compiled import CompiledPolicySet, CompliancePolicy
from mdm_core.policy.engine import evaluate
from mdm_core.policy.model import (
    Decision,
    EvaluationInput,
    Reason,
    ReasonCode,
    RuleKey,
    UserContext,
)
from mdm_core.posture.model import Ownership, Platform, Posture

__all__ = ["DEFAULT_MAX_ENTRIES", "CacheStats", "DecisionCache", "validity_end"]

#: Entries kept by default: one per (device, application) recently decided.
DEFAULT_MAX_ENTRIES = 50_000
#: The clock's resolution: "valid while age <= max" ends one tick after the limit.
_TICK = timedelta(microseconds=1)
# _restamped rebuilds reasons by position: refuse to run if Reason's fields move.
if Reason._fields[7:] != ("first_failed_at", "escalates_at"):  # pragma: no cover
    raise ImportError("decision_cache: Reason fields changed; update _restamped")
_UNCACHEABLE_CODES = frozenset({ReasonCode.POSTURE_STALE, ReasonCode.EVALUATION_ERROR})

_Scope = tuple[Platform, Ownership]


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    uncacheable: int
    entries: int


@dataclass(frozen=True, slots=True)
class _Entry:
    policies: CompiledPolicySet
    user: UserContext | None
    device: DeviceRecord
    posture: Posture | None
    posture_age: timedelta | None
    #: ``now - posture_age`` when the caller gave the age (the time the age counts from, e.g.
    #: when the server received the report), and until when a request with the same anchor
    #: is still fresh under every applicable policy (None: no applicable policy)
    age_anchor: datetime | None
    anchor_fresh_until: datetime | None
    rule_failures: Mapping[RuleKey, datetime]
    computed_at: datetime
    valid_until: datetime | None  # None: no clock dependency
    decision: Decision
    #: reasons of rules failing "now" (no recorded first failure): (in report_only, index,
    #: escalation offset); their stamps follow the clock, their stage does not (elapsed 0)
    restamp: tuple[tuple[bool, int, timedelta | None], ...]


@dataclass(frozen=True, slots=True)
class _ScopeClock:
    """How the applicable rules of one scope depend on the clock."""

    reads_now: bool  # a CEL condition reads ``now``: never cache
    by_date: bool  # a patch level checked by age: valid until the next UTC midnight


class DecisionCache:
    """Memoised :func:`~mdm_core.policy.engine.evaluate`; see the module docstring."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str | None], _Entry] = OrderedDict()
        self._by_user: dict[str, set[tuple[str, str | None]]] = {}
        self._lock = threading.Lock()
        self._clocks: dict[tuple[int, tuple[str, ...], _Scope], _ScopeClock] = {}
        self._clocks_for: CompiledPolicySet | None = None
        self._hits = self._misses = self._uncacheable = 0

    # --- the read path --------------------------------------------------------------------

    def evaluate(self, request: EvaluationInput, policies: CompiledPolicySet) -> Decision:
        """The decision :func:`evaluate` gives for ``request`` under ``policies`` (equal to
        it field for field), from the cache when every input matches and ``request.now`` lies
        in the entry's validity window."""
        device = request.device
        if device is None:  # blocks at once; nothing worth keeping
            return evaluate(request, policies)
        key = (device.id, request.app)
        now = request.now
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and _matches(entry, request, policies):
                self._entries.move_to_end(key)
                self._hits += 1
                hit, restamp = entry.decision, entry.restamp
            else:
                hit, restamp = None, ()
                self._misses += 1
        if hit is not None:
            age: timedelta | None = None  # as the engine stamps it: only with a posture
            if request.posture is not None:
                age = request.posture_age
                if age is None:
                    age = now - request.posture.collected_at
            return _restamped(hit, now, age, restamp)
        decision = evaluate(request, policies)
        cacheable, valid_until, restamp = self._validity(request, policies, decision)
        if not cacheable or (valid_until is not None and valid_until <= now):
            with self._lock:
                self._uncacheable += 1
            return decision
        self._store(
            key,
            _Entry(
                policies=policies,
                user=request.user,
                device=device,
                posture=request.posture,
                posture_age=request.posture_age,
                age_anchor=_age_anchor(request),
                anchor_fresh_until=self._anchor_fresh_until(request, policies),
                rule_failures=dict(request.rule_failures),
                computed_at=now,
                valid_until=valid_until,
                decision=decision,
                restamp=restamp,
            ),
        )
        return decision

    # --- invalidation (the event wiring calls these) --------------------------------------

    def invalidate_device(self, device_id: str) -> int:
        """Forget every entry of ``device_id`` (posture reported, status changed); returns how
        many. Unknown device: 0."""
        with self._lock:
            keys = [k for k in self._entries if k[0] == device_id]
            for key in keys:
                self._drop(key)
            return len(keys)

    def invalidate_user(self, user_id: str) -> int:
        """Forget every entry decided for ``user_id`` (membership or account change); returns
        how many. Unknown user: 0."""
        with self._lock:
            keys = list(self._by_user.get(user_id, ()))
            for key in keys:
                self._drop(key)
            return len(keys)

    def clear(self) -> None:
        """Forget everything (policy reload)."""
        with self._lock:
            self._entries.clear()
            self._by_user.clear()
            self._clocks.clear()
            self._clocks_for = None

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, self._uncacheable, len(self._entries))

    # --- internals -----------------------------------------------------------------------

    @staticmethod
    def _anchor_fresh_until(
        request: EvaluationInput, policies: CompiledPolicySet
    ) -> datetime | None:
        """When a request with this request's age anchor stops being fresh (the anchor plus
        the smallest ``max_posture_age`` of the applicable policies); ``None``: the request
        gave no age or no policy applies (such entries hit only on an equal age)."""
        anchor, device, posture = _age_anchor(request), request.device, request.posture
        if anchor is None or device is None or posture is None:
            return None
        groups = request.user.groups if request.user is not None else frozenset()
        applicable = policies.compliance_for(groups, device.platform, device.ownership)
        if not applicable:
            return None
        return anchor + min(p.max_posture_age for p in applicable)

    def _store(self, key: tuple[str, str | None], entry: _Entry) -> None:
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = entry
            self._by_user.setdefault(entry.device.user_id, set()).add(key)
            while len(self._entries) > self.max_entries:
                self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[str, str | None]) -> None:
        entry = self._entries.pop(key)
        keys = self._by_user.get(entry.device.user_id)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_user[entry.device.user_id]

    def _validity(
        self, request: EvaluationInput, policies: CompiledPolicySet, decision: Decision
    ) -> tuple[bool, datetime | None, tuple[tuple[bool, int, timedelta | None], ...]]:
        """``(cacheable, valid_until, restamp)`` for ``decision``: the end of the window in
        which it holds (``None``: no clock dependency) and the reasons stamped with the
        clock (see :class:`_Entry`)."""
        now = request.now
        until: datetime | None = None
        failures = request.rule_failures
        restamp: list[tuple[bool, int, timedelta | None]] = []
        for report_only, reasons in ((False, decision.reasons), (True, decision.report_only)):
            for index, reason in enumerate(reasons):
                if reason.code in _UNCACHEABLE_CODES:
                    return False, None, ()
                if reason.code is not ReasonCode.RULE_FAILED:
                    continue
                if (reason.policy_id, reason.rule_id) not in failures:
                    # Fails "now": first failure = the clock, elapsed 0, a constant stage.
                    offset = None if reason.escalates_at is None else reason.escalates_at - now
                    restamp.append((report_only, index, offset))
                else:
                    until = _earlier(until, reason.escalates_at)
        stamps = tuple(restamp)
        device, posture = request.device, request.posture
        assert device is not None
        if posture is None:
            return True, until, stamps
        groups = request.user.groups if request.user is not None else frozenset()
        scope = (device.platform, device.ownership)
        applicable = policies.compliance_for(groups, *scope)
        if not applicable:
            return True, until, stamps
        if request.posture_age is None:
            fresh_until = posture.collected_at + min(p.max_posture_age for p in applicable)
            until = _earlier(until, fresh_until + _TICK)
        clock = self._scope_clock(policies, applicable, scope)
        if clock.reads_now:
            return False, None, ()
        if clock.by_date:
            midnight = datetime.combine(now.date() + timedelta(days=1), time(), now.tzinfo)
            until = _earlier(until, midnight)
        return True, until, stamps

    def _scope_clock(
        self, policies: CompiledPolicySet, applicable: list[CompliancePolicy], scope: _Scope
    ) -> _ScopeClock:
        ids = tuple(p.id for p in applicable)
        key = (id(policies), ids, scope)
        with self._lock:
            if self._clocks_for is not policies:
                self._clocks.clear()
                self._clocks_for = policies
            known = self._clocks.get(key)
        if known is not None:
            return known
        reads_now = by_date = False
        for policy in policies.compliance:
            if policy.id not in ids:
                continue
            for rule in policy.by_scope.get(scope, policy.rules):
                if rule.check_key == "cel":
                    args = rule.check_args
                    reads_now = reads_now or not isinstance(args, CelCondition) or args.uses_now
                elif rule.check_key == "min_security_patch_level":
                    by_date = by_date or not _is_date(rule.check_args)
        clock = _ScopeClock(reads_now=reads_now, by_date=by_date)
        with self._lock:
            if self._clocks_for is policies:
                self._clocks[key] = clock
        return clock


_DATE_SPEC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _is_date(spec: object) -> bool:
    """A ``min_security_patch_level`` given as a date (not as an age: no clock)."""
    return isinstance(spec, str) and _DATE_SPEC.fullmatch(spec) is not None


def _restamped(
    decision: Decision,
    now: datetime,
    age: timedelta | None,
    restamp: tuple[tuple[bool, int, timedelta | None], ...],
) -> Decision:
    """``decision`` as the engine would stamp it at ``now``."""
    if not restamp:
        return decision._replace(evaluated_at=now, posture_age=age)
    reasons, report_only = list(decision.reasons), list(decision.report_only)
    for in_report_only, index, offset in restamp:
        target = report_only if in_report_only else reasons
        old = target[index]  # fields 0-6 as computed; 7-8: first_failed_at, escalates_at
        target[index] = tuple.__new__(
            Reason, (*old[:7], now, None if offset is None else now + offset)
        )
    return decision._replace(
        evaluated_at=now,
        posture_age=age,
        reasons=tuple(reasons),
        report_only=tuple(report_only),
    )


def _same_anchor(entry: _Entry, request: EvaluationInput) -> bool:
    """The request's age counts from the entry's anchor and is still fresh: the engine sees
    the same posture with an age that grew only by the time since (below every maximum)."""
    if entry.age_anchor is None or entry.age_anchor != _age_anchor(request):
        return False
    return entry.anchor_fresh_until is not None and request.now < entry.anchor_fresh_until


def _age_anchor(request: EvaluationInput) -> datetime | None:
    """The time ``request.posture_age`` counts from (``None``: the engine computes the age)."""
    return None if request.posture_age is None else request.now - request.posture_age


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _matches(entry: _Entry, request: EvaluationInput, policies: CompiledPolicySet) -> bool:
    now = request.now
    if entry.policies is not policies or now < entry.computed_at:
        return False
    if entry.valid_until is not None and now >= entry.valid_until:
        return False
    posture = request.posture
    return (
        (entry.posture is posture or entry.posture == posture)
        and entry.device == request.device
        and entry.user == request.user
        and (entry.posture_age == request.posture_age or _same_anchor(entry, request))
        and entry.rule_failures == request.rule_failures
    )


def validity_end(
    cache: DecisionCache, request: EvaluationInput, policies: CompiledPolicySet
) -> tuple[bool, datetime | None]:
    """``(cacheable, valid_until)`` of the decision for ``request``, as :class:`DecisionCache`
    would store it (``valid_until`` ``None``: no clock dependency). For tests and
    diagnostics."""
    cacheable, until, _ = cache._validity(request, policies, evaluate(request, policies))
    return cacheable, until
