"""Policies: YAML policy files -> validated, compiled predicates -> access decisions.

Pipeline: :mod:`~mdm_core.policy.source` reads YAML with line marks,
:mod:`~mdm_core.policy.schema` checks the shape (JSON Schema),
:mod:`~mdm_core.policy.compiler` checks meaning (CEL, duplicates, conflicts, groups) and builds
a :class:`~mdm_core.policy.compiled.CompiledPolicySet` of closures once;
:func:`mdm_core.policy.engine.evaluate` turns an
:class:`~mdm_core.policy.model.EvaluationInput` into a
:class:`~mdm_core.policy.model.Decision` with no I/O; :class:`~mdm_core.policy.repository.
PolicyRepository` reloads edited files and keeps the last valid set when an edit is invalid.
"""
