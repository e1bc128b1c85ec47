"""Where this Manager runs: the one account and Region whose functions it may read and change.

Learned from the Lambda context's `invoked_function_arn` (set on AWS and by the local runtime),
so nothing needs configuring. Accounts of one organisation reuse function names (orders-api in
dev, staging and prod): an alarm or ARN of another account or Region names *that* account's
function, never our namesake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Home:
    account: str
    region: str

    @classmethod
    def of_context(cls, context: Any) -> Home:
        """This function's account and Region; unknown ("") when the context has no ARN, which no
        account or Region matches (nothing named by an ARN is taken as ours)."""
        located = locate(getattr(context, "invoked_function_arn", None))
        return cls(*located) if located else cls("", "")

    def __str__(self) -> str:
        return f"account {self.account or '?'} / Region {self.region or '?'}"

    def holds(self, account: Any, region: Any) -> bool:
        """Whether an account and Region are this one (never when this one is unknown)."""
        return bool(self.account and self.region) and (account, region) == (self.account, self.region)

    def elsewhere(self, arn: str) -> str | None:
        """Where an ARN points when that is not here ("account X / Region Y"); None when it is here."""
        account, region = locate(arn) or ("", "")
        return None if self.holds(account, region) else f"account {account or '?'} / Region {region or '?'}"


def locate(arn: Any) -> tuple[str, str] | None:
    """(account, Region) of an ARN (arn:partition:service:region:account:resource); None if not an ARN."""
    parts = arn.split(":", 5) if isinstance(arn, str) else []
    if len(parts) < 6 or parts[0] != "arn":
        return None
    return parts[4], parts[3]
