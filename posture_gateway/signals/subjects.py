"""Subject identifiers (RFC 9493, SSF 1.0 section 3) and per-stream subject filtering.

A subject a receiver adds or removes (SSF 1.0 section 8.1.3) is normalised to ONE key, a
string that names each of its members; an event is described by the keys every subject that
would match it normalises to (:func:`candidate_keys`). A stream then carries the event when
(:func:`decide`): no matching subject was removed, and either one was added or the stream's
default is ``ALL``. Removal wins over addition: a receiver that removed a subject gets no
event about it, whatever else it added.

Formats understood: ``email``, ``iss_sub``, ``opaque`` and ``complex`` (members ``user`` and
``device``). Anything else is refused with :class:`SubjectError` (the API answers 400).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SubjectError",
    "UserRef",
    "subject_key",
    "candidate_keys",
    "decide",
    "user_subject",
    "complex_subject",
]

_MAX_VALUE = 256
_MEMBERS = ("device", "user")  # sorted: the key names members in this order


class SubjectError(ValueError):
    """A subject identifier this transmitter cannot interpret."""


@dataclass(frozen=True, slots=True)
class UserRef:
    """The user an event is about: our id (the OP's ``sub``) and, when known, the email."""

    id: str
    email: str | None = None


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_VALUE:
        raise SubjectError(f"{name} must be a non-empty string of at most {_MAX_VALUE} chars")
    return value


def _simple_key(subject: Mapping[str, Any]) -> str:
    fmt = subject.get("format")
    if fmt == "email":
        allowed = {"format", "email"}
        key = "email:" + _text(subject.get("email"), "email").strip().lower()
    elif fmt == "iss_sub":
        allowed = {"format", "iss", "sub"}
        key = f"iss_sub:{_text(subject.get('iss'), 'iss')}|{_text(subject.get('sub'), 'sub')}"
    elif fmt == "opaque":
        allowed = {"format", "id"}
        key = "opaque:" + _text(subject.get("id"), "id")
    else:
        raise SubjectError(f"unsupported subject format {fmt!r}")
    extra = sorted(set(subject) - allowed)
    if extra:
        raise SubjectError(f"unexpected members in a {fmt} subject: {extra}")
    return key


def subject_key(subject: object) -> str:
    """The normalised key of a receiver's subject; raises :class:`SubjectError`."""
    if not isinstance(subject, Mapping):
        raise SubjectError("subject must be a JSON object")
    if subject.get("format") != "complex":
        return _simple_key(subject)
    members = {k: v for k, v in subject.items() if k != "format"}
    unknown = sorted(set(members) - set(_MEMBERS))
    if unknown or not members:
        raise SubjectError(f"a complex subject needs members among {list(_MEMBERS)}")
    parts = []
    for name in _MEMBERS:
        if name in members:
            member = members[name]
            if not isinstance(member, Mapping) or member.get("format") == "complex":
                raise SubjectError(f"complex member {name} must be a simple subject")
            parts.append(f"{name}={_simple_key(member)}")
    return "&".join(parts)


def _user_keys(user: UserRef, issuer: str) -> list[str]:
    keys = [f"iss_sub:{issuer}|{user.id}", f"opaque:{user.id}"]
    if user.email:
        keys.insert(0, "email:" + user.email.strip().lower())
    return keys


def candidate_keys(user: UserRef | None, device_id: str | None, issuer: str) -> list[str]:
    """Every subject key that designates this user and/or device (simple or complex)."""
    users = _user_keys(user, issuer) if user else []
    devices = [f"opaque:{device_id}"] if device_id else []
    keys: list[str] = [*users, *devices]
    keys += [f"user={u}" for u in users] + [f"device={d}" for d in devices]
    keys += [f"device={d}&user={u}" for d in devices for u in users]
    return list(dict.fromkeys(keys))


def decide(default_all: bool, matches: Iterable[bool]) -> bool:
    """Whether a stream carries an event, given its matching subjects' ``included`` flags."""
    seen = list(matches)
    if any(not included for included in seen):
        return False
    return bool(seen) or default_all


def user_subject(user: UserRef, issuer: str) -> dict[str, str]:
    """The user's subject identifier: ``email`` when known (what Okta matches users by),
    else ``iss_sub`` under our issuer (the ``sub`` our OP gives the user)."""
    if user.email:
        return {"format": "email", "email": user.email}
    return {"format": "iss_sub", "iss": issuer, "sub": user.id}


def complex_subject(user: UserRef | None, device_id: str | None, issuer: str) -> dict[str, Any]:
    """SSF 1.0 section 3.3 complex subject with ``user`` and/or ``device`` members."""
    subject: dict[str, Any] = {"format": "complex"}
    if user is not None:
        subject["user"] = user_subject(user, issuer)
    if device_id is not None:
        subject["device"] = {"format": "opaque", "id": device_id}
    if len(subject) == 1:
        raise SubjectError("a complex subject needs a user or a device")
    return subject
