"""The one error tree; each class's docstring is its default message.

AsphaltError
├── BadRequest        400  the input is wrong; names the field
├── Unauthorized      401  no credential, or one that is not valid (or was revoked)
├── Forbidden         403  a valid credential that may not do this
├── NotFound          404
├── Conflict          409  duplicate id, stale attempt, transition not allowed
├── TooLarge          413
├── StoreFull         507  the data store has no room left
└── Unavailable       503  the master is stopping or a dependency is down
"""

from __future__ import annotations


class AsphaltError(Exception):
    """Something went wrong."""

    status = 500

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        self.message = message or (self.__doc__ or "").strip()
        self.field = field

    def to_json(self) -> dict[str, str]:
        body = {"error": self.message}
        if self.field:
            body["field"] = self.field
        return body


class BadRequest(AsphaltError):
    """The request is not valid."""

    status = 400


class Unauthorized(AsphaltError):
    """This needs a credential: send Authorization: Bearer TOKEN."""

    status = 401


class Forbidden(AsphaltError):
    """The credential sent may not do this."""

    status = 403


class NotFound(AsphaltError):
    """There is nothing at this address."""

    status = 404


class Conflict(AsphaltError):
    """The request conflicts with the current state."""

    status = 409


class TooLarge(AsphaltError):
    """The request body is too large."""

    status = 413


class StoreFull(AsphaltError):
    """The data store is full; free disk space or restart the master with a larger -map-size."""

    status = 507


class Unavailable(AsphaltError):
    """The master is not accepting this request right now; retry shortly."""

    status = 503
