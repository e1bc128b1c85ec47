"""Lambda RevisionId for moto 5.2.5 functions, so optimistic locking behaves as on AWS.

moto returns no `RevisionId` for a function and ignores the one passed to
UpdateFunctionConfiguration. Selfheal's apply step relies on it (a concurrent change must make
its write fail with PreconditionFailedException), so the emulator and the tests install this:
every function gets a revision, configuration and code updates check and rotate it, and move its
`LastModified` as Lambda does (moto keeps the creation time).
"""

from __future__ import annotations

import uuid
from typing import Any

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    from moto.awslambda.exceptions import PreconditionFailedException
    from moto.awslambda.models import LambdaFunction
    from moto.core.utils import iso_8601_datetime_with_nanoseconds

    original_get = LambdaFunction.get_configuration
    original_update = LambdaFunction.update_configuration
    original_code = LambdaFunction.update_function_code

    def revision(fn: Any) -> str:
        if not getattr(fn, "_selfheal_revision", None):
            fn._selfheal_revision = str(uuid.uuid4())
        return str(fn._selfheal_revision)

    def get_configuration(self: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        config = original_get(self, *args, **kwargs)
        config["RevisionId"] = revision(self)
        return config

    def update_configuration(self: Any, config_updates: dict[str, Any]) -> dict[str, Any]:
        expected = config_updates.get("RevisionId")
        if expected and expected != revision(self):
            raise PreconditionFailedException(
                "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API "
                "to retrieve the latest Revision Id"
            )
        self._selfheal_revision = str(uuid.uuid4())
        self.last_modified = iso_8601_datetime_with_nanoseconds()
        return original_update(self, {k: v for k, v in config_updates.items() if k != "RevisionId"})

    def update_function_code(self: Any, updated_spec: dict[str, Any]) -> dict[str, Any]:
        expected = updated_spec.get("RevisionId")
        if expected and expected != revision(self):
            raise PreconditionFailedException("The Revision Id provided does not match the latest Revision Id.")
        self._selfheal_revision = str(uuid.uuid4())
        self.last_modified = iso_8601_datetime_with_nanoseconds()
        return original_code(self, updated_spec)

    LambdaFunction.get_configuration = get_configuration  # type: ignore[method-assign]
    LambdaFunction.update_configuration = update_configuration  # type: ignore[method-assign]
    LambdaFunction.update_function_code = update_function_code  # type: ignore[method-assign]
    _installed = True
