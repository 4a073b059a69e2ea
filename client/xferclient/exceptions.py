"""What the client raises, one root:

    ClientError             no xfer endpoint, xfer unreachable, an image name that names none
     +-- ApiError           xfer answered with an error: its code and sentence, the HTTP status
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Something the user can act on, said in one sentence (str(error))."""


class ApiError(ClientError):
    """xfer's error reply, {"error": {"code", "message", "field"}}."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 request_id: str | None = None) -> None:
        self.status, self.code, self.message = status, code, message
        self.field, self.request_id = field, request_id
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = f" (field {self.field})" if self.field else ""
        return f"{self.code}: {self.message}{where}"

    @classmethod
    def from_reply(cls, status: int, body: Any, request_id: str | None) -> ApiError:
        """From xfer's JSON error; a reply that is not one (a proxy's page) keeps its status."""
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and isinstance(error.get("code"), str):
            return cls(status, error["code"], str(error.get("message", "")),
                       error.get("field"), request_id)
        return cls(status, f"http_{status}", "xfer answered without an error document",
                   None, request_id)
