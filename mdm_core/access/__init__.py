"""Access decisions: ONE evaluator, one request type, one decision type.

Every channel — the browser login and its token refresh, Microsoft Entra EAM, the posture
decision API, the Okta hook, what-if — builds an :class:`AccessRequest` and asks the
:class:`AccessEvaluator` for a :class:`Decision`: prove the device, read the state, choose
the posture, evaluate, audit, once (:mod:`mdm_core.access.evaluator`). The compliance
evaluation at check-in reuses the same pure steps (:mod:`mdm_core.access.evaluate`).

- :mod:`~mdm_core.access.request`: :class:`AccessRequest`;
- :mod:`~mdm_core.access.decision`: :class:`Decision`, :class:`Reason`;
- :mod:`~mdm_core.access.state`: the narrow read protocol and its SQL implementation;
- :mod:`~mdm_core.access.evaluate`: the pure steps (posture choice, evaluation);
- :mod:`~mdm_core.access.audit`: the audit record of a decision;
- :mod:`~mdm_core.access.whatif`: what-if explanations on the same path;
- :mod:`~mdm_core.access.wiring`: the evaluator of a running core.
"""

from mdm_core.access.decision import OUTCOMES, Decision, Outcome, Reason, block
from mdm_core.access.evaluator import AccessDecisions, AccessEvaluator, Explanation
from mdm_core.access.request import AccessRequest, Channel

__all__ = [
    "AccessDecisions",
    "AccessEvaluator",
    "AccessRequest",
    "Channel",
    "Decision",
    "Explanation",
    "OUTCOMES",
    "Outcome",
    "Reason",
    "block",
]
