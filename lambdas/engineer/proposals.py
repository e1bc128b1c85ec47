"""The provider's answer for one (incident, attempt), stored before anything else happens with
it: the model's fix or refusal on its own, as soon as it answers; the runbook's fix (free and
deterministic) with the FIX_PROPOSED status it leads to (one transaction).

A Lambda retry or a replay of the same step reuses the stored answer: the model is called at
most once per attempt, and its cost is counted once.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from selfheal_core import aws, keys
from selfheal_core.ddb import from_item, get_items, to_item
from selfheal_core.events import Fix, utc_now
from selfheal_core.incidents import Incident, IncidentStore, Status

from .providers.base import ProviderError, ProviderResult


def _key(incident_id: str, attempt: int, resumed: int) -> dict[str, str]:
    # A resumed request (after a budget pause or a provider outage) is a new step: its own key.
    return {"pk": keys.incident_pk(incident_id), "sk": f"PROPOSAL#{attempt:03d}#{resumed:03d}"}


class ProposalStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def get(self, incident_id: str, attempt: int, resumed: int = 0) -> ProviderResult | ProviderError | None:
        item = (
            aws.table(self.table_name)
            .get_item(Key=_key(incident_id, attempt, resumed), ConsistentRead=True)
            .get("Item")
        )
        return _outcome(from_item(item)) if item else None

    def get_with_incident(
        self, incident_id: str, attempt: int, resumed: int = 0
    ) -> tuple[Incident | None, ProviderResult | ProviderError | None]:
        """The incident and the answer stored for this step, in one read (same table, same pk)."""
        incident_key = {"pk": keys.incident_pk(incident_id), "sk": keys.META}
        proposal_key = _key(incident_id, attempt, resumed)
        found = get_items(self.table_name, [incident_key, proposal_key])
        incident = found.get((incident_key["pk"], incident_key["sk"]))
        proposal = found.get((proposal_key["pk"], proposal_key["sk"]))
        return (
            Incident.from_item(incident) if incident else None,
            _outcome(proposal) if proposal else None,
        )

    def put(
        self, incident_id: str, attempt: int, outcome: ProviderResult | ProviderError, resumed: int = 0
    ) -> ProviderResult | ProviderError:
        """Store the outcome unless one is stored already; returns the stored one (first writer wins).

        An unreachable provider (`provider_error`) is not an answer: it is not stored, so the
        step resumed after the outage asks again. The runbook's fix is stored with its status
        instead (`put_proposed`).
        """
        if isinstance(outcome, ProviderError) and outcome.category == "provider_error":
            return outcome
        try:
            aws.table(self.table_name).put_item(
                Item=self._item(incident_id, attempt, outcome, resumed), ConditionExpression="attribute_not_exists(pk)"
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return self.get(incident_id, attempt, resumed) or outcome
        return outcome

    def put_proposed(
        self,
        incidents: IncidentStore,
        incident_id: str,
        attempt: int,
        result: ProviderResult,
        resumed: int,
        reason: str,
    ) -> bool:
        """Store a new fix and move the incident to FIX_PROPOSED in one transaction. False: the
        incident may not move (nothing stored); ItemRefused: an answer is stored for this step
        already (another delivery's, first writer wins)."""
        return incidents.transition_and_put(
            incident_id,
            Status.FIX_PROPOSED,
            put={
                "Item": self._item(incident_id, attempt, result, resumed),
                "ConditionExpression": "attribute_not_exists(pk)",
            },
            reason=reason,
            expected_attempt=attempt,
            redo_from=frozenset({Status.FIX_PROPOSED}),
        )

    @staticmethod
    def _item(incident_id: str, attempt: int, outcome: ProviderResult | ProviderError, resumed: int) -> dict[str, Any]:
        body: dict[str, Any]
        if isinstance(outcome, ProviderError):
            body = {"error": {"reason": outcome.reason[:4000], "category": outcome.category}}
        else:
            body = {
                "fix": outcome.fix.model_dump(mode="json"),
                "reasoning": outcome.reasoning,
                "confidence": outcome.confidence,
            }
        item = {**_key(incident_id, attempt, resumed), "record_type": "proposal", "created_at": utc_now(), **body}
        return dict(to_item(item))


def _outcome(item: dict[str, Any]) -> ProviderResult | ProviderError:
    if "error" in item:
        return ProviderError(item["error"]["reason"], item["error"]["category"])
    return ProviderResult(
        fix=Fix.model_validate(item["fix"]),
        reasoning=item.get("reasoning", []),
        confidence=float(item.get("confidence", 0.5)),
    )
