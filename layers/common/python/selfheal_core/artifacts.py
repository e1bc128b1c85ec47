"""Claim-check store for content too large to travel in an event (source, patches, test logs)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from . import aws
from .events import ArtifactRef

# Content above this size leaves the event and goes to S3; EventBridge entries cap at 256 KB.
INLINE_LIMIT_BYTES = 32 * 1024


class ArtifactStore:
    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def put_json(self, key: str, value: Any) -> ArtifactRef:
        body = json.dumps(value, sort_keys=True).encode()
        aws.client("s3").put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json")
        return ArtifactRef(bucket=self.bucket, key=key, size_bytes=len(body), sha256=hashlib.sha256(body).hexdigest())

    def get_json(self, ref: ArtifactRef) -> Any:
        body = aws.client("s3").get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read()
        if ref.sha256 and hashlib.sha256(body).hexdigest() != ref.sha256:
            raise ValueError(f"artifact {ref.key} does not match its checksum")
        return json.loads(body)


def too_large(value: Any) -> bool:
    return len(json.dumps(value, default=str).encode()) > INLINE_LIMIT_BYTES
