"""
The server API: the application's hand on the chat, behind the API token, on every instance.

    POST   /api/users/{user}/disconnect      {"reason"?, "refuseFor"?}  -> {"connections": N}
    PUT    /api/rooms/{room}/members/{user}                             -> {"connections": N}
    DELETE /api/rooms/{room}/members/{user}                             -> {"connections": N}
    GET    /api/rooms/{room}/members          -> {"room": R, "members": [{user, nick, connections}]}
    POST   /api/broadcast                     {"rooms": [...], "text", "nick"?, "user"?}
                                              -> {"offsets": {room: offset}}

Each command goes to every instance through the broker (L{portshare.hub.Hub.command}), and
the answers are summed or merged here.  Every request needs the API token; with none
configured the server API is refused (403), never open.  Publishing on behalf of a user is
C{"user"} in C{POST /api/rooms/{room}/messages} (L{portshare.api}) or in a broadcast.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, FirstError, gatherResults
from twisted.python.failure import Failure
from twisted.web.resource import IResource
from twisted.web.server import Request

from portshare import errors
from portshare.apiguard import SAFE_METHODS, ApiPolicy, ApiResource
from portshare.errors import BadRequest
from portshare.httpjson import answerLater, notFound, readJsonBody, writeError
from portshare.hub import Hub, memberRows
from portshare.wire import validNick, validRoom, validText

#: the longest user id (a token's C{sub}) the server API takes
MAX_USER = 256
#: the most rooms one broadcast may name
MAX_BROADCAST_ROOMS = 100
#: the longest reason of a disconnect, in UTF-8 bytes (a WebSocket close frame's limit)
MAX_REASON_BYTES = 123
#: the longest refusal a disconnect may ask for, in seconds (a week)
MAX_REFUSE_FOR = 7 * 24 * 3600.0


def validUser(segment: bytes) -> str:
    """
    A user id from a path segment, as a token's C{sub} may be.

    twisted.web has percent-decoded the segment already (C{Request.postpath}): it is decoded
    as UTF-8 here and not unquoted again, or C{a%2541} (the user C{a%41}) would reach the
    user C{aA}, and every non-ASCII id would be refused.
    """
    try:
        user = segment.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("the user id must be percent-encoded UTF-8") from None
    if not 1 <= len(user) <= MAX_USER or not user.isprintable() or user.isspace():
        raise BadRequest(f"the user id must be 1 to {MAX_USER} printable characters")
    return user


def optionalUser(body: dict[str, Any]) -> str | None:
    """The C{"user"} of a request body (publishing on behalf of that user), if any."""
    user = body.get("user")
    if user is None:
        return None
    if (
        not isinstance(user, str)
        or not 1 <= len(user) <= MAX_USER
        or not user.isprintable()
        or user.isspace()
    ):
        raise BadRequest(f"user must be a string of 1 to {MAX_USER} printable characters")
    return user


def _sum(answers: list[dict[str, Any]], key: str = "connections") -> dict[str, int]:
    return {key: sum(int(a.get(key, 0)) for a in answers)}


class ServerApiResource(ApiResource):
    """A resource of the server API: the API token, always (L{ApiPolicy.checkServer})."""

    def __init__(self, hub: Hub, guard: ApiPolicy) -> None:
        super().__init__(guard)
        self.hub = hub

    def admit(self, request: Request, method: str) -> None:
        super().admit(request, method)
        self.guard.checkServer(request)


class DisconnectResource(ServerApiResource):
    """C{POST /api/users/{user}/disconnect}: every connection of the user, everywhere."""

    isLeaf = True

    def __init__(self, hub: Hub, guard: ApiPolicy, user: str) -> None:
        super().__init__(hub, guard)
        self.user = user

    def render_POST(self, request: Request) -> int:
        body = _optionalBody(request, self.hub.limits.maxBody)
        reason = body.get("reason")
        if reason is not None and (
            not isinstance(reason, str)
            or not reason.isprintable()
            or len(reason.encode("utf-8", "replace")) > MAX_REASON_BYTES
        ):
            # the reason of a WebSocket close frame: at most 123 bytes of UTF-8, and what
            # the client shows, so printable (no line breaks, no terminal escapes)
            raise BadRequest(f"reason must be printable text of at most {MAX_REASON_BYTES} bytes")
        refuseFor = body.get("refuseFor")
        if refuseFor is not None and (
            isinstance(refuseFor, bool)
            or not isinstance(refuseFor, (int, float))
            or not 0 <= refuseFor <= MAX_REFUSE_FOR
        ):
            raise BadRequest(f"refuseFor must be 0 to {MAX_REFUSE_FOR:g} seconds")
        command = {"op": "disconnect", "user": self.user, "reason": reason, "refuseFor": refuseFor}
        return answerLater(request, self.hub.command(command).addCallback(_sum))


class UsersResource(ServerApiResource):
    """C{/api/users/{user}/...}."""

    def getChild(self, path: bytes, request: Request) -> IResource:
        try:
            user = validUser(path)
        except BadRequest as e:
            return RefusedResource(self.hub, self.guard, e)
        postpath, prepath = request.postpath, request.prepath
        if postpath == [b"disconnect"] and prepath is not None:
            postpath.pop()
            prepath.append(b"disconnect")
            return DisconnectResource(self.hub, self.guard, user)
        return notFound()


class MemberResource(ServerApiResource):
    """C{PUT|DELETE /api/rooms/{room}/members/{user}}: a user's connections in or out."""

    isLeaf = True

    def __init__(self, hub: Hub, guard: ApiPolicy, room: str, user: str) -> None:
        super().__init__(hub, guard)
        self.room = room
        self.user = user

    def render_PUT(self, request: Request) -> int:
        command = {"op": "join", "user": self.user, "room": self.room}
        return answerLater(request, self.hub.command(command).addCallback(_sum))

    def render_DELETE(self, request: Request) -> int:
        command = {"op": "leave", "user": self.user, "room": self.room}
        return answerLater(request, self.hub.command(command).addCallback(_sum))


class MembersResource(ServerApiResource):
    """C{GET /api/rooms/{room}/members}: who is in the room, on every instance."""

    def __init__(self, hub: Hub, guard: ApiPolicy, room: str) -> None:
        super().__init__(hub, guard)
        self.room = room

    def render_GET(self, request: Request) -> int:
        room = self.room

        def merged(answers: list[dict[str, Any]]) -> dict[str, Any]:
            counts: dict[tuple[str | None, str], int] = {}
            for answer in answers:
                for member in answer.get("members", ()):
                    key = (member["user"], member["nick"])
                    counts[key] = counts.get(key, 0) + int(member["connections"])
            return {"room": room, "members": memberRows(counts)}

        d = self.hub.command({"op": "members", "room": room})
        return answerLater(request, d.addCallback(merged))

    def getChild(self, path: bytes, request: Request) -> IResource:
        if request.postpath:
            return notFound()
        try:
            return MemberResource(self.hub, self.guard, self.room, validUser(path))
        except BadRequest as e:
            return RefusedResource(self.hub, self.guard, e)


class BroadcastResource(ServerApiResource):
    """C{POST /api/broadcast}: one message to many rooms, in one call."""

    isLeaf = True

    def render_POST(self, request: Request) -> int:
        limits = self.hub.limits
        body = readJsonBody(request, limits.maxBody)
        rooms = body.get("rooms")
        if not isinstance(rooms, list) or not 1 <= len(rooms) <= MAX_BROADCAST_ROOMS:
            raise BadRequest(f"rooms must be a list of 1 to {MAX_BROADCAST_ROOMS} room names")
        names = list(dict.fromkeys(validRoom(r) for r in rooms))
        text = validText(body.get("text"), limits.maxText)
        nick = validNick(body.get("nick", "server"))
        user = optionalUser(body)
        published: list[Deferred[Any]] = [
            self.hub.publish(room, nick, text, user=user) for room in names
        ]
        d = gatherResults(published, consumeErrors=True)
        d.addCallback(lambda messages: {"offsets": {m.room: m.offset for m in messages}})
        d.addErrback(_firstError)
        return answerLater(request, d)


def _firstError(failure: Failure) -> Failure:
    """The failure of the first publish that failed (a broadcast is answered by it)."""
    error: Any = failure.value
    if isinstance(error, FirstError):
        return error.subFailure  # type: ignore[no-any-return]
    return failure


def _optionalBody(request: Request, maxBody: int) -> dict[str, Any]:
    """A JSON object body, or an empty one when none was sent."""
    content = request.content
    if content is None:
        return {}
    here = content.tell()
    empty = not content.read(1)
    content.seek(here)
    return {} if empty else readJsonBody(request, maxBody)


class RefusedResource(ServerApiResource):
    """
    A server API path that is refused (a hostile user segment): refused for its token
    first, as every server API request is, so that a caller without the API token learns
    nothing from the path's validation (401 or 403, never the 400).
    """

    isLeaf = True

    def __init__(self, hub: Hub, guard: ApiPolicy, error: errors.PortshareError) -> None:
        super().__init__(hub, guard)
        self.error = error

    def render(self, request: Request) -> bytes:
        method = request.method.decode("ascii", "replace")
        try:
            if method not in SAFE_METHODS:
                self.guard.checkOrigin(request)
            self.guard.checkServer(request)
        except errors.PortshareError as e:
            return writeError(request, e)
        return writeError(request, self.error)


__all__ = [
    "BroadcastResource",
    "MembersResource",
    "UsersResource",
    "validUser",
]
