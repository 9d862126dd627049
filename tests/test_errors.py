"""
Tests for L{portshare.errors}: every error class's contract code and HTTP status.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from portshare import errors
from portshare.errors import (
    BadRequest,
    Forbidden,
    LocalError,
    NotJoined,
    PortshareError,
    RateLimited,
    RemoteError,
    TooLarge,
    Unavailable,
    UnknownType,
)


class ErrorCodeTests(SynchronousTestCase):
    """Each error class carries the contract's code and answers with its HTTP status."""

    def assertCodeAndStatus(self, cls: type[PortshareError], code: str, status: int) -> None:
        error = cls("why")
        self.assertEqual((error.code, error.httpStatus), (code, status))

    def test_portshareError(self) -> None:
        """The base error is a bad_request answered with 400."""
        self.assertCodeAndStatus(PortshareError, "bad_request", 400)

    def test_remoteError(self) -> None:
        """A generic remote error is a bad_request answered with 400."""
        self.assertCodeAndStatus(RemoteError, "bad_request", 400)

    def test_badRequest(self) -> None:
        """BadRequest is code bad_request, HTTP 400."""
        self.assertCodeAndStatus(BadRequest, "bad_request", 400)

    def test_unknownType(self) -> None:
        """UnknownType is code unknown_type, HTTP 400."""
        self.assertCodeAndStatus(UnknownType, "unknown_type", 400)

    def test_notJoined(self) -> None:
        """NotJoined is code not_joined, HTTP 409."""
        self.assertCodeAndStatus(NotJoined, "not_joined", 409)

    def test_tooLarge(self) -> None:
        """TooLarge is code too_large, HTTP 413."""
        self.assertCodeAndStatus(TooLarge, "too_large", 413)

    def test_rateLimited(self) -> None:
        """RateLimited is code rate_limited, HTTP 429."""
        self.assertCodeAndStatus(RateLimited, "rate_limited", 429)

    def test_forbidden(self) -> None:
        """Forbidden is code forbidden, HTTP 403."""
        self.assertCodeAndStatus(Forbidden, "forbidden", 403)

    def test_unauthorized(self) -> None:
        """Unauthorized (a refused token) is code unauthorized, HTTP 401, the client's fault."""
        self.assertCodeAndStatus(errors.Unauthorized, "unauthorized", 401)
        self.assertTrue(issubclass(errors.Unauthorized, errors.RemoteError))

    def test_chatErrorCodesOfVersion2(self) -> None:
        """Version 2 of the contract adds unauthorized to the codes an error event carries."""
        self.assertEqual(errors.CHAT_ERROR_CODES[-1], "unauthorized")
        self.assertEqual(len(set(errors.CHAT_ERROR_CODES)), 8)

    def test_privateCloseCodes(self) -> None:
        """The contract's private close codes: 4000 disconnected by the server, 4001 expired."""
        self.assertEqual((errors.CLOSE_DISCONNECTED, errors.CLOSE_TOKEN_EXPIRED), (4000, 4001))

    def test_localError(self) -> None:
        """A generic local error is code unavailable, HTTP 503."""
        self.assertCodeAndStatus(LocalError, "unavailable", 503)

    def test_unavailable(self) -> None:
        """Unavailable is code unavailable, HTTP 503."""
        self.assertCodeAndStatus(Unavailable, "unavailable", 503)

    def test_codeConstants(self) -> None:
        """The module's code constants spell the contract's error codes."""
        self.assertEqual(
            [
                errors.BAD_REQUEST,
                errors.UNKNOWN_TYPE,
                errors.NOT_JOINED,
                errors.TOO_LARGE,
                errors.RATE_LIMITED,
                errors.FORBIDDEN,
                errors.UNAVAILABLE,
            ],
            [
                "bad_request",
                "unknown_type",
                "not_joined",
                "too_large",
                "rate_limited",
                "forbidden",
                "unavailable",
            ],
        )

    def test_httpOnlyCodes(self) -> None:
        """The HTTP-only codes map to 401, 404 and 405."""
        self.assertEqual(
            [
                errors.HTTP_STATUS[errors.UNAUTHORIZED],
                errors.HTTP_STATUS[errors.NOT_FOUND],
                errors.HTTP_STATUS[errors.METHOD_NOT_ALLOWED],
            ],
            [401, 404, 405],
        )
        self.assertEqual(
            (errors.UNAUTHORIZED, errors.NOT_FOUND, errors.METHOD_NOT_ALLOWED),
            ("unauthorized", "not_found", "method_not_allowed"),
        )

    def test_closeCodes(self) -> None:
        """The WebSocket close codes are the RFC 6455 numbers the contract names."""
        self.assertEqual(
            (
                errors.CLOSE_GOING_AWAY,
                errors.CLOSE_PROTOCOL_ERROR,
                errors.CLOSE_INVALID_DATA,
                errors.CLOSE_POLICY,
                errors.CLOSE_TOO_BIG,
                errors.CLOSE_SERVER_ERROR,
                errors.CLOSE_TRY_AGAIN_LATER,
            ),
            (1001, 1002, 1007, 1008, 1009, 1011, 1013),
        )


class PortshareErrorTests(SynchronousTestCase):
    """The common behaviour of every portshare error."""

    def test_reason(self) -> None:
        """The reason given at construction is kept and is the exception's text."""
        error = TooLarge("text is longer than 5 characters")
        self.assertEqual(error.reason, "text is longer than 5 characters")
        self.assertEqual(str(error), "text is longer than 5 characters")

    def test_refDefaultsToNone(self) -> None:
        """An error does not answer any client ref until one is attached."""
        self.assertIsNone(BadRequest("x").ref)

    def test_codeOverride(self) -> None:
        """An explicit code replaces the class's code and picks the matching HTTP status."""
        error = BadRequest("no such room", code=errors.NOT_FOUND)
        self.assertEqual((error.code, error.httpStatus), ("not_found", 404))

    def test_codeOverrideIsPerInstance(self) -> None:
        """Overriding one error's code leaves its class's code alone."""
        BadRequest("x", code=errors.FORBIDDEN)
        self.assertEqual(BadRequest("y").code, "bad_request")

    def test_unknownCodeIs400(self) -> None:
        """A code that the status table does not know is answered with 400."""
        self.assertEqual(RemoteError("x", code="mystery").httpStatus, 400)

    def test_remoteAndLocal(self) -> None:
        """Client faults are RemoteErrors and server faults are LocalErrors, not both."""
        for cls in (BadRequest, UnknownType, NotJoined, TooLarge, RateLimited, Forbidden):
            self.assertTrue(issubclass(cls, RemoteError), cls)
            self.assertFalse(issubclass(cls, LocalError), cls)
        self.assertTrue(issubclass(Unavailable, LocalError))
        self.assertFalse(issubclass(Unavailable, RemoteError))
        self.assertTrue(issubclass(RemoteError, PortshareError))
        self.assertTrue(issubclass(LocalError, PortshareError))
