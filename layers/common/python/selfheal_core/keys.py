"""Key design for the tables in one place (the access patterns, no scans).

Decisions table (pk, sk) + GSI1 (gsi1pk, gsi1sk) + GSI2 (gsi2pk, gsi2sk):
  incident        INCIDENT#<id>        | #META                      GSI2 INCIDENTS#<day> | <created_at>
  decision        INCIDENT#<id>        | DECISION#<ts>#<uid> or DECISION#ONCE#<agent>#<step>#<attempt> GSI1 AGENT#<agent>   | <ts>          (2)
  fingerprint     FINGERPRINT#<fp>     | #OPEN   -> incident_id                                          (5)
  target hold     TARGET#<function>    | #HOLD   -> incident_id whose change on the function is in flight

Validations table (pk, sk), no index; written by QA's role only, read by the Manager's:
  validation      INCIDENT#<id>        | VALIDATION#<attempt:03>    QA's verdict on one attempt's fix

Monitoring table (pk, sk) + GSI1 + GSI2:
  event           INCIDENT#<id>|AGENT#<a> | EVENT#<ts>#<uid>      GSI1 EVENT#<type>    | <ts>          (1, 2)
  cost            INCIDENT#<id>|AGENT#<a> | COST#<ts>#<uid>       GSI1 COST#AGENT#<a>  | <ts>
                                                                  GSI2 COST#DAY#<day>  | <agent>#<ts>  (4)
  collaboration   INCIDENT#<id>        | MSG#<ts>#<uid>           GSI1 COLLAB#<day>    | <ts>#<from>#<to> (3)
  budget          BUDGET#<kind>        | <period>   reserved_usd, spent_usd                            (6)
  rejected event  REJECTED#<day>       | <ts>#<uid>  reason, raw (capped)
                  REJECTED-DELIVERY#<key> | -          marks a refused delivery listed (retries, replays: once)
An incident's timeline (1) is one query per table on pk INCIDENT#<id>, merged by sk timestamp.
"""

from __future__ import annotations

import uuid

META = "#META"
OPEN = "#OPEN"
HOLD = "#HOLD"


def day_of(ts: str) -> str:
    return ts[:10]


def uid() -> str:
    return uuid.uuid4().hex[:10]


def incident_pk(incident_id: str) -> str:
    return f"INCIDENT#{incident_id}"


def fingerprint_pk(fingerprint: str) -> str:
    return f"FINGERPRINT#{fingerprint}"


def target_pk(function_name: str) -> str:
    return f"TARGET#{function_name}"


def validation_sk(attempt: int) -> str:
    return f"VALIDATION#{attempt:03d}"


def owner_pk(incident_id: str | None, agent: str) -> str:
    return incident_pk(incident_id) if incident_id else f"AGENT#{agent}"
