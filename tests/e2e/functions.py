"""Functions the e2e incidents concern, created in the emulator's Lambda API (configuration only)."""

from __future__ import annotations

import io
import zipfile
from typing import Any


def create_function(rt: Any, name: str, *, timeout: int = 3, memory: int = 128, managed: bool = False) -> str:
    """Unless `managed`, not tagged selfheal:managed: the Manager investigates it and refuses to change it."""
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return event\n")
    role = rt.client("iam").create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    created = rt.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": code.getvalue()},
        Timeout=timeout,
        MemorySize=memory,
        Tags={"selfheal:managed": "true"} if managed else {},
    )
    return str(created["FunctionArn"])
