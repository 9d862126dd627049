"""
JSON over HTTP for twisted.web resources: answers, refusals and request bodies.

Every refusal is C{{"error": CODE, "reason": TEXT}} with the status that the error's code maps
to (L{portshare.errors}), never an HTML page or a traceback.  Nothing here knows the chat: the
API, the protocol switch, SSE and the operators' resources all answer through it.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request

from portshare import errors
from portshare.errors import BadRequest, PortshareError, TooLarge
from portshare.wire import dumps, validOffset

log = Logger()

#: the media type of every request body read here
JSON_TYPE = "application/json"

# reason phrases twisted.web does not know
_PHRASES = {
    426: b"Upgrade Required",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
}


def writeJson(request: Request, status: int, body: Any) -> bytes:
    """Set the status and headers of a JSON answer; @return: its body."""
    request.setResponseCode(status, _PHRASES.get(status))
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-content-type-options", b"nosniff")
    return dumps(body)


def writeError(request: Request, error: PortshareError) -> bytes:
    """A JSON refusal with the status that the error's code maps to."""
    return writeJson(request, error.httpStatus, {"error": error.code, "reason": error.reason})


class ErrorResource(Resource):
    """Answers every request with one JSON error (404 for unknown API paths)."""

    isLeaf = True

    def __init__(self, error: PortshareError) -> None:
        super().__init__()
        self.error = error

    def render(self, request: Request) -> bytes:
        return writeError(request, self.error)


def notFound(what: str = "no such resource") -> ErrorResource:
    return ErrorResource(PortshareError(what, errors.NOT_FOUND))


class JsonResource(Resource):
    """
    A resource whose every answer is JSON: unknown children are 404, unknown methods 405,
    and a L{PortshareError} raised by a C{render_*} method becomes its JSON refusal.
    """

    def getChild(self, path: bytes, request: Request) -> IResource:
        return notFound()

    def methods(self) -> list[str]:
        allowed = [
            m for m in ("GET", "POST", "PUT", "PATCH", "DELETE") if hasattr(self, f"render_{m}")
        ]
        return [*allowed, "HEAD"] if "GET" in allowed else allowed

    def render(self, request: Request) -> bytes | int:
        allowed = self.methods()
        if not allowed:
            return writeError(request, PortshareError("no such resource", errors.NOT_FOUND))
        method = request.method.decode("ascii", "replace")
        if method not in allowed:
            request.setHeader(b"allow", ", ".join(allowed).encode("ascii"))
            return writeError(
                request, PortshareError(f"{method} is not allowed here", errors.METHOD_NOT_ALLOWED)
            )
        handler = getattr(self, f"render_{'GET' if method == 'HEAD' else method}")
        try:
            self.admit(request, method)
            return handler(request)
        except PortshareError as e:
            return writeError(request, e)

    def admit(self, request: Request, method: str) -> None:
        """
        Checks that every request to this resource passes before its C{render_*} method,
        whatever the method: a leaf resource refuses paths below it (404), so that
        C{/api/rooms/R/messages/extra} is not taken for C{/api/rooms/R/messages}.

        @raise PortshareError: the refusal to answer with.
        """
        if self.isLeaf and request.postpath:
            raise PortshareError("no such resource", errors.NOT_FOUND)


def answerLater(request: Request, d: Deferred[Any], status: int = 200) -> int:
    """
    Finish C{request} with the JSON result of C{d}, or with its refusal; nothing is written
    if the client went away meanwhile.
    """
    gone: list[bool] = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))

    def done(body: Any) -> None:
        if not gone:
            request.write(writeJson(request, status, body))
            request.finish()

    def failed(failure: Failure) -> None:
        if isinstance(failure.value, PortshareError):
            error = failure.value
        else:
            log.failure("API request failed", failure)
            error = errors.Unavailable("the message broker is not available")
        if not gone:
            request.write(writeError(request, error))
            request.finish()

    d.addCallbacks(done, failed)
    return NOT_DONE_YET


def queryInt(request: Request, name: str, default: int) -> int:
    values = request.args.get(name.encode("ascii"))
    if not values:
        return default
    try:
        value = int(values[0])
    except ValueError:
        raise BadRequest(f"{name} must be a whole number >= 0") from None
    return validOffset(value, name)


def readJsonBody(request: Request, maxBody: int) -> dict[str, Any]:
    """
    @return: the request's JSON object body.
    @raise TooLarge: beyond C{maxBody} bytes.
    @raise BadRequest: when it is not a JSON object.
    @raise UnsupportedMediaType: when it is not sent as C{application/json}: a body of
        another type is what an HTML form or a C{no-cors} fetch on another site can send
        without a CORS preflight.
    """
    contentType = (request.getHeader(b"content-type") or b"").decode("latin-1")
    if contentType.partition(";")[0].strip().lower() != JSON_TYPE:
        raise errors.UnsupportedMediaType(
            f"the body must be sent as Content-Type: {JSON_TYPE}"
            + (f", not {contentType.strip()[:100]}" if contentType.strip() else "")
        )
    length = request.getHeader(b"content-length")
    if length is not None and length.isdigit() and int(length) > maxBody:
        raise TooLarge(f"the body is larger than {maxBody} bytes")
    content = request.content
    raw = content.read(maxBody + 1) if content is not None else b""
    if len(raw) > maxBody:
        raise TooLarge(f"the body is larger than {maxBody} bytes")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body
