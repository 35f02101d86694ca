"""Decision policy: turn a consensus into execute, alert or inform.

Every comparison is inclusive (value >= threshold), and the decision's reason names each
compared value and threshold with full float precision, so a printed boundary case never
looks like it went the wrong way.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastpath.consensus import BEARISH, BULLISH, NEUTRAL, UNSPECIFIED, ConsensusResult
from server.config import Thresholds

# Only in a decision: the ensemble did not agree enough to name a direction.
UNCERTAIN = 4

_DIRECTION_NAMES = {
    UNSPECIFIED: "unspecified",
    BULLISH: "bullish",
    BEARISH: "bearish",
    NEUTRAL: "neutral",
    UNCERTAIN: "uncertain",
}


@dataclass(frozen=True)
class Decision:
    action: str  # "execute", "alert" or "inform"
    direction: int  # 1 bullish, 2 bearish, 3 neutral, 4 uncertain
    reason: str


def decide(consensus: ConsensusResult, thresholds: Thresholds) -> Decision:
    """Apply the thresholds to a consensus.

    execute: confidence_level >= confidence_execute, agreement_strength >= agreement_execute,
    and the large models agree (available and holding) on the overall direction, which is not
    neutral. Otherwise alert, with the overall direction, when confidence_level >=
    confidence_alert and agreement_strength >= agreement_alert. Otherwise inform, with
    direction uncertain. With no influence at all (no model answered, or every confidence is 0)
    the decision is inform whatever the thresholds, and so it is when the models that
    answered hold less than quorum_weight_share of the total base weight (the quorum).

    Raises ValueError when the consensus was computed with other large-model settings than
    `thresholds` holds.
    """
    _check_large_settings(consensus, thresholds)
    if sum(consensus.direction_influence) == 0.0:
        return Decision("inform", UNCERTAIN, _no_influence_reason(consensus))
    quorum = _compare(
        "answered_weight_share",
        consensus.answered_weight_share,
        "quorum_weight_share",
        thresholds.quorum_weight_share,
    )
    if not quorum[0]:
        return Decision("inform", UNCERTAIN, "quorum not reached: " + quorum[1])

    execute_checks = [
        _compare(
            "confidence_level",
            consensus.confidence_level,
            "confidence_execute",
            thresholds.confidence_execute,
        ),
        _compare(
            "agreement_strength",
            consensus.agreement_strength,
            "agreement_execute",
            thresholds.agreement_execute,
        ),
        _large_agreement(consensus),
    ]
    if all(passed for passed, _ in execute_checks):
        return Decision("execute", consensus.overall_direction, _reason(execute_checks))

    alert_checks = [
        _compare(
            "confidence_level",
            consensus.confidence_level,
            "confidence_alert",
            thresholds.confidence_alert,
        ),
        _compare(
            "agreement_strength",
            consensus.agreement_strength,
            "agreement_alert",
            thresholds.agreement_alert,
        ),
    ]
    reason = "not execute: " + _reason(execute_checks) + "; "
    if all(passed for passed, _ in alert_checks):
        return Decision("alert", consensus.overall_direction, reason + _reason(alert_checks))
    return Decision("inform", UNCERTAIN, reason + "not alert: " + _reason(alert_checks))


def direction_name(direction: int) -> str:
    """Return the lower-case name of a direction code, such as "bullish"."""
    return _DIRECTION_NAMES.get(direction, f"unknown direction {direction}")


def _check_large_settings(consensus: ConsensusResult, thresholds: Thresholds) -> None:
    if consensus.large_min_weight != thresholds.large_model_min_weight:
        raise ValueError(
            f"consensus used large_min_weight {consensus.large_min_weight!r} but"
            f" thresholds.large_model_min_weight is {thresholds.large_model_min_weight!r}"
        )
    if consensus.large_min_agreement != thresholds.large_consensus_min_agreement:
        raise ValueError(
            f"consensus used large_min_agreement {consensus.large_min_agreement!r} but"
            " thresholds.large_consensus_min_agreement is"
            f" {thresholds.large_consensus_min_agreement!r}"
        )


def _compare(name: str, value: float, threshold_name: str, threshold: float) -> tuple[bool, str]:
    passed = value >= threshold
    sign = ">=" if passed else "<"
    return passed, f"{name} {_number(value)} {sign} {threshold_name} {_number(threshold)}"


def _number(value: float) -> str:
    # Twelve significant digits drop binary rounding residue (0.8785000000000001) and still
    # show a value that misses a threshold by more than 1e-12 as below it.
    return f"{value:.12g}"


def _large_agreement(consensus: ConsensusResult) -> tuple[bool, str]:
    counts = f"{consensus.large_answered} of {consensus.large_configured} large models answered"
    if not consensus.large_available:
        return False, f"large-model agreement unavailable ({counts})"
    share = (
        f"large_share {_number(consensus.large_share)}"
        f" {'>=' if consensus.large_holds else '<'}"
        f" large_consensus_min_agreement {_number(consensus.large_min_agreement)}"
    )
    if not consensus.large_holds:
        return False, f"large models disagree ({counts}, {share})"
    large = direction_name(consensus.large_direction)
    if consensus.large_direction == NEUTRAL:
        return False, f"large models agree on neutral ({counts}, {share})"
    if consensus.large_direction != consensus.overall_direction:
        overall = direction_name(consensus.overall_direction)
        return False, f"large models agree on {large} but overall is {overall} ({counts}, {share})"
    return True, f"large models agree on {large} ({counts}, {share})"


def _reason(checks: list[tuple[bool, str]]) -> str:
    return ", ".join(text for _, text in checks)


def _no_influence_reason(consensus: ConsensusResult) -> str:
    if consensus.answered == 0:
        return "no model answered"
    return f"every answered model ({consensus.answered}) has confidence 0"
