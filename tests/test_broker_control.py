"""
Tests for L{portshare.broker.control}: the control messages' codec and the gathering of a
command's answers, without Redis.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from portshare.broker.control import (
    MAX_ID,
    Answer,
    Gathering,
    Request,
    answerPayload,
    parseControl,
    requestPayload,
)

ids = st.text(min_size=1, max_size=MAX_ID)
json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
objects = st.dictionaries(st.text(), json, max_size=4)


class CodecTests(SynchronousTestCase):
    """Requests and answers survive the channel; anything else is refused."""

    @given(ids, ids, objects)
    def test_roundTrips(self, id: str, origin: str, body: dict) -> None:  # type: ignore[type-arg]
        """Any ids and any JSON object survive, as a request and as an answer."""
        request = Request(id, origin, body)
        self.assertEqual(parseControl(requestPayload(request)), request)
        answer = Answer(id, origin, body)
        self.assertEqual(parseControl(answerPayload(answer).encode("utf-8")), answer)

    def test_refused(self) -> None:
        """What is not a request or an answer, or has a bad id or body, is refused."""
        for payload in (
            "",
            "x|{}",
            "q|",
            "q|{",
            "q|[]",
            'q|{"id":"1","from":"a"}',
            'q|{"id":"1","from":"a","command":[1]}',
            'q|{"id":1,"from":"a","command":{}}',
            'q|{"id":"","from":"a","command":{}}',
            'q|{"id":"1","command":{}}',
            'a|{"id":"1","from":"a","command":{}}',
            'a|{"id":"1","from":"a","answer":null}',
            'q|{"id":"%s","from":"a","command":{}}' % ("x" * (MAX_ID + 1)),
            "p|join|nick",
        ):
            with self.assertRaises(ValueError, msg=payload):
                parseControl(payload)


class GatheringTests(SynchronousTestCase):
    """A command is done once as many instances answered as received it."""

    def test_doneAtTheCount(self) -> None:
        """Answers before and after the count; done at the count, not before."""
        gathering = Gathering(cap=10)
        self.assertFalse(gathering.received(Answer("r", "a", {"n": 1})))
        self.assertFalse(gathering.sent(3))
        self.assertFalse(gathering.received(Answer("r", "b", {"n": 2})))
        self.assertFalse(gathering.received(Answer("r", "b", {"n": 9})))  # duplicate
        self.assertTrue(gathering.received(Answer("r", "c", {"n": 3})))
        self.assertEqual(gathering.result(), [{"n": 1}, {"n": 2}, {"n": 3}])

    def test_notDoneWithoutTheCount(self) -> None:
        """Without PUBLISH's count, no number of answers is enough."""
        gathering = Gathering(cap=2)
        for name in "abc":
            self.assertFalse(gathering.received(Answer("r", name, {})))
        self.assertEqual(len(gathering.answers), 2)  # capped

    def test_cap(self) -> None:
        """At most cap answers are kept; done at the cap even if more received it."""
        gathering = Gathering(cap=2)
        gathering.sent(5)
        gathering.received(Answer("r", "a", {}))
        self.assertTrue(gathering.received(Answer("r", "b", {})))
        gathering.received(Answer("r", "c", {}))
        self.assertEqual(len(gathering.answers), 2)
        self.assertTrue(Gathering(cap=2).sent(0))
