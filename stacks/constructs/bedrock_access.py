"""The Engineer's permission to call Claude on Amazon Bedrock: one model, never `*`.

* A foundation model id (`anthropic.claude-…`) is invoked in the stack's own Region: the
  grant is that one foundation-model ARN.
* An inference profile id (`us.`, `eu.`, `apac.`, `jp.`, `au.`, `us-gov.` or `global.` +
  `anthropic.claude-…`) routes each request to a Region the profile chooses. The grant is the
  profile ARN in the stack's Region, plus the profile's foundation model in any Region
  (`arn:…:bedrock:*::foundation-model/<id>`; a global profile also uses the Region-less
  `arn:…:bedrock:::foundation-model/<id>`) on condition that the call comes through exactly
  this profile (`bedrock:InferenceProfileArn`). Only InvokeModel: the provider never streams.
"""

from __future__ import annotations

import re

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam

from ..nag import acknowledge

_PROFILE = re.compile(r"^(?P<geo>[a-z]{2,6}(?:-[a-z]+)?)\.(?P<model>anthropic\.claude-[a-z0-9.:-]+)$")
_MODEL = re.compile(r"^anthropic\.claude-[a-z0-9.:-]+$")


def grant_bedrock_invoke(role: iam.Role, model_id: str) -> list[str]:
    """Add the statements to `role`; returns the resource ARNs granted (for tests and docs)."""
    stack = Stack.of(role)
    partition = Aws.PARTITION
    profile = _PROFILE.fullmatch(model_id)
    if profile is None:
        if not _MODEL.fullmatch(model_id):
            raise ValueError(f"{model_id!r} is not a Bedrock Claude model or inference profile id")
        arn = f"arn:{partition}:bedrock:{stack.region}::foundation-model/{model_id}"
        role.add_to_policy(iam.PolicyStatement(actions=["bedrock:InvokeModel"], resources=[arn]))
        return [arn]
    profile_arn = f"arn:{partition}:bedrock:{stack.region}:{stack.account}:inference-profile/{model_id}"
    foundation = profile.group("model")
    any_region = f"arn:{partition}:bedrock:*::foundation-model/{foundation}"
    models = [any_region]
    if profile.group("geo") == "global":
        models.append(f"arn:{partition}:bedrock:::foundation-model/{foundation}")
    role.add_to_policy(iam.PolicyStatement(actions=["bedrock:InvokeModel"], resources=[profile_arn]))
    role.add_to_policy(
        iam.PolicyStatement(
            actions=["bedrock:InvokeModel"],
            resources=models,
            conditions={"StringEquals": {"bedrock:InferenceProfileArn": profile_arn}},
        )
    )
    acknowledge(
        role,
        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:bedrock:*::foundation-model/{foundation}]",
        reason="A cross-Region inference profile picks the Region per request; the grant is this one model, "
        "and only through this one inference profile (bedrock:InferenceProfileArn condition).",
    )
    return [profile_arn, *models]
