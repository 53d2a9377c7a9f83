"""The MDM error tree: every leaf has a distinct machine-readable reason, drawn in the docstring."""

from __future__ import annotations

import mdm_core.domain.errors as errors


def _classes() -> list[type[errors.MdmError]]:
    return [getattr(errors, name) for name in errors.__all__]


def test_every_exported_error_is_an_mdm_error_with_a_unique_reason() -> None:
    classes = _classes()
    assert all(issubclass(cls, errors.MdmError) for cls in classes)
    reasons = [cls.reason for cls in classes]
    assert len(reasons) == len(set(reasons))
    assert all(r.replace("_", "").isalpha() and r == r.lower() for r in reasons)


def test_the_docstring_draws_every_class_with_its_reason() -> None:
    doc = errors.__doc__ or ""
    for cls in _classes():
        assert f"{cls.__name__} ({cls.status} {cls.reason})" in doc, cls.__name__


def test_status_hints_are_http_statuses() -> None:
    for cls in _classes():
        assert 400 <= cls.status <= 599
    assert issubclass(errors.NonceMismatch, errors.WrongTarget)
    assert errors.ProofError("x").message == "x"
    assert errors.ReplayedProof().message == "replayed proof"
