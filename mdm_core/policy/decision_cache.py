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

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import NamedTuple

from mdm_core.domain.model import DeviceRecord
from mdm_core.policy.compiled import CompiledPolicySet, Plan
from mdm_core.policy.engine import evaluate, evaluate_with_plan, plan_for
from mdm_core.policy.model import (
    Decision,
    EvaluationInput,
    Reason,
    ReasonCode,
    RuleKey,
    UserContext,
)
from mdm_core.posture.model import Posture

__all__ = ["DEFAULT_MAX_ENTRIES", "CacheStats", "DecisionCache", "validity_end"]

#: Entries kept by default: one per (device, application) recently decided.
DEFAULT_MAX_ENTRIES = 50_000
#: The clock's resolution: "valid while age <= max" ends one tick after the limit.
_TICK = timedelta(microseconds=1)
# _restamped rebuilds reasons by position: refuse to run if Reason's fields move.
if Reason._fields[7:] != ("first_failed_at", "escalates_at"):  # pragma: no cover
    raise ImportError("decision_cache: Reason fields changed; update _restamped")
if (Decision._fields[1], Decision._fields[4], Decision._fields[7], Decision._fields[9]) != (
    "reasons",
    "posture_age",
    "report_only",
    "evaluated_at",
) or len(Decision._fields) != 11:  # pragma: no cover
    raise ImportError("decision_cache: Decision fields changed; update _restamped")
_UNCACHEABLE_CODES = frozenset({ReasonCode.POSTURE_STALE, ReasonCode.EVALUATION_ERROR})
_RULE_FAILED = ReasonCode.RULE_FAILED


@dataclass(frozen=True, slots=True)
class CacheStats:
    hits: int
    misses: int
    uncacheable: int
    entries: int


class _Entry(NamedTuple):  # (a NamedTuple: built per miss, 5x cheaper than a frozen dataclass)
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


class DecisionCache:
    """Memoised :func:`~mdm_core.policy.engine.evaluate`; see the module docstring."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[tuple[str, str | None], _Entry] = OrderedDict()
        self._by_user: dict[str, set[tuple[str, str | None]]] = {}
        self._lock = threading.Lock()
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
        decision, plan = evaluate_with_plan(request, policies)
        cacheable, valid_until, restamp = _validity(request, plan, decision)
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
                anchor_fresh_until=_anchor_fresh_until(request, plan),
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

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, self._uncacheable, len(self._entries))

    # --- internals -----------------------------------------------------------------------

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


def _plan(request: EvaluationInput, policies: CompiledPolicySet) -> Plan | None:
    """The applicable policies of ``request`` as the engine found them (``None``: no device
    or no posture, so nothing depends on them)."""
    device, posture = request.device, request.posture
    if device is None or posture is None:
        return None
    groups = request.user.groups if request.user is not None else frozenset()
    return plan_for(policies, groups, device.platform, device.ownership)


def _anchor_fresh_until(request: EvaluationInput, plan: Plan | None) -> datetime | None:
    """When a request with this request's age anchor stops being fresh (the anchor plus
    the smallest ``max_posture_age`` of the applicable policies); ``None``: the request
    gave no age or no policy applies (such entries hit only on an equal age)."""
    anchor = _age_anchor(request)
    if anchor is None or plan is None or plan.min_age is None:
        return None
    return anchor + plan.min_age


def _validity(
    request: EvaluationInput, plan: Plan | None, decision: Decision
) -> tuple[bool, datetime | None, tuple[tuple[bool, int, timedelta | None], ...]]:
    """``(cacheable, valid_until, restamp)`` for ``decision``: the end of the window in
    which it holds (``None``: no clock dependency) and the reasons stamped with the
    clock (see :class:`_Entry`). ``plan``: :func:`_plan` of the request."""
    now = request.now
    until: datetime | None = None
    failures = request.rule_failures
    restamp: list[tuple[bool, int, timedelta | None]] = []
    for report_only, reasons in ((False, decision.reasons), (True, decision.report_only)):
        for index, reason in enumerate(reasons):
            code = reason.code
            if code in _UNCACHEABLE_CODES:
                return False, None, ()
            if code is not _RULE_FAILED:
                continue
            if (reason.policy_id, reason.rule_id) not in failures:
                # Fails "now": first failure = the clock, elapsed 0, a constant stage.
                offset = None if reason.escalates_at is None else reason.escalates_at - now
                restamp.append((report_only, index, offset))
            else:
                until = _earlier(until, reason.escalates_at)
    stamps = tuple(restamp)
    posture = request.posture
    if posture is None or plan is None or plan.min_age is None:
        return True, until, stamps  # no posture, or no applicable policy
    if request.posture_age is None:
        until = _earlier(until, posture.collected_at + plan.min_age + _TICK)
    if plan.reads_now:  # a CEL condition of an applicable rule reads ``now``
        return False, None, ()
    if plan.by_date:  # a patch level checked by age: the answer may change at midnight
        midnight = datetime.combine(now.date() + timedelta(days=1), time(), now.tzinfo)
        until = _earlier(until, midnight)
    return True, until, stamps


def _restamped(
    decision: Decision,
    now: datetime,
    age: timedelta | None,
    restamp: tuple[tuple[bool, int, timedelta | None], ...],
) -> Decision:
    """``decision`` as the engine would stamp it at ``now`` (rebuilt by position: a
    NamedTuple's ``_replace`` costs several times more)."""
    reasons, report_only = decision[1], decision[7]
    if restamp:
        reason_list, report_list = list(reasons), list(report_only)
        for in_report_only, index, offset in restamp:
            target = report_list if in_report_only else reason_list
            old = target[index]  # fields 0-6 as computed; 7-8: first_failed_at, escalates_at
            target[index] = tuple.__new__(
                Reason, (*old[:7], now, None if offset is None else now + offset)
            )
        reasons, report_only = tuple(reason_list), tuple(report_list)
    d = decision
    return tuple.__new__(
        Decision, (d[0], reasons, d[2], d[3], age, d[5], d[6], report_only, d[8], now, d[10])
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
    decision = evaluate(request, policies)
    cacheable, until, _ = _validity(request, _plan(request, policies), decision)
    return cacheable, until
