"""
Error codes of the wire contract, and where each one ends up.

Two kinds, as in h11: a L{RemoteError} is the client's fault (bad input, not allowed, too
much); a L{LocalError} is ours (the broker is away).  Each maps, in this one module, to the
C{error} event code on the chat socket and to an HTTP status on the API.
"""

from __future__ import annotations

# Error codes carried by {"type": "error"} events (the contract's list).
BAD_REQUEST = "bad_request"
UNKNOWN_TYPE = "unknown_type"
NOT_JOINED = "not_joined"
TOO_LARGE = "too_large"
RATE_LIMITED = "rate_limited"
FORBIDDEN = "forbidden"
UNAVAILABLE = "unavailable"
# version 2: a token refused on an {"type": "auth"} message, or a message before auth
UNAUTHORIZED = "unauthorized"

#: every code an {"type": "error"} event may carry
CHAT_ERROR_CODES = (
    BAD_REQUEST,
    UNKNOWN_TYPE,
    NOT_JOINED,
    TOO_LARGE,
    RATE_LIMITED,
    FORBIDDEN,
    UNAVAILABLE,
    UNAUTHORIZED,
)

# HTTP-only codes in {"error": CODE, "reason": TEXT} bodies.
NOT_FOUND = "not_found"
METHOD_NOT_ALLOWED = "method_not_allowed"
UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
# the application behind --proxy (portshare.proxy): down or refusing, or too slow
BAD_GATEWAY = "bad_gateway"
GATEWAY_TIMEOUT = "gateway_timeout"

HTTP_STATUS: dict[str, int] = {
    BAD_REQUEST: 400,
    UNKNOWN_TYPE: 400,
    NOT_JOINED: 409,
    TOO_LARGE: 413,
    RATE_LIMITED: 429,
    FORBIDDEN: 403,
    UNAVAILABLE: 503,
    UNAUTHORIZED: 401,
    NOT_FOUND: 404,
    METHOD_NOT_ALLOWED: 405,
    UNSUPPORTED_MEDIA_TYPE: 415,
    BAD_GATEWAY: 502,
    GATEWAY_TIMEOUT: 504,
}

# WebSocket close codes (RFC 6455 section 7.4.1) used by the service.
CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_SERVER_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013
# Private-use codes (RFC 6455 section 7.4.2: 4000-4999), fixed by the contract's version 2.
#: closed by the server API (POST /api/users/{user}/disconnect)
CLOSE_DISCONNECTED = 4000
#: the connection's token expired (exp plus the leeway) without an auth message refreshing it
CLOSE_TOKEN_EXPIRED = 4001
# Never sent (RFC 6455 section 7.4.1): the codes a closed connection is counted and logged with
# when the close frame that ended it had no code (1005), or no close frame was exchanged (1006).
CLOSE_NO_STATUS = 1005
CLOSE_ABNORMAL = 1006


class PortshareError(Exception):
    """
    A refusal that is reported to the client, never a traceback.

    @ivar code: the contract's error code.
    @ivar reason: a human-readable explanation, safe to show to the client.
    """

    code: str = BAD_REQUEST
    #: the client's C{ref} of the message this error answers, when known
    ref: str | int | None = None

    def __init__(self, reason: str, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code

    @property
    def httpStatus(self) -> int:
        """The HTTP status this error is answered with on the API."""
        return HTTP_STATUS.get(self.code, 400)


class RemoteError(PortshareError):
    """The client sent something we refuse."""


class BadRequest(RemoteError):
    """A command or request that is malformed or invalid."""

    code = BAD_REQUEST


class UnknownType(RemoteError):
    """A command of a type the server does not know."""

    code = UNKNOWN_TYPE


class NotJoined(RemoteError):
    """A command for a room the connection has not joined."""

    code = NOT_JOINED


class TooLarge(RemoteError):
    """Over a limit: a text, a frame, a body, the rooms of a connection."""

    code = TOO_LARGE


class RateLimited(RemoteError):
    """More than the rate limit allows."""

    code = RATE_LIMITED


class Forbidden(RemoteError):
    """Not allowed: a token, a grant or the origin says no."""

    code = FORBIDDEN


class Unauthorized(RemoteError):
    """
    A token refused (bad, expired, for another audience, ...), or none where one is required:
    HTTP 401 with C{{"error": "unauthorized"}}, or error C{unauthorized} on the chat socket.
    """

    code = UNAUTHORIZED


class UnsupportedMediaType(RemoteError):
    """An HTTP body that is not the JSON it must be."""

    code = UNSUPPORTED_MEDIA_TYPE


class LocalError(PortshareError):
    """We cannot do what was asked right now; the client may try again later."""

    code = UNAVAILABLE


class Unavailable(LocalError):
    """The broker (or another part the server needs) cannot serve now."""

    code = UNAVAILABLE


class BadGateway(LocalError):
    """The application behind C{--proxy} is down, refused the connection or answered badly."""

    code = BAD_GATEWAY


class GatewayTimeout(LocalError):
    """The application behind C{--proxy} did not accept the connection or answer in time."""

    code = GATEWAY_TIMEOUT
