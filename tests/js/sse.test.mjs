// The WebSocket's interface over SSE + HTTP (portshare/static/client/sse.js), on a fake EventSource and fetch.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { SseSocket } from '../../portshare/static/client/sse.js';
import { FakeClock, fakeEventSourceClass, settle } from './fakes.mjs';

/** An SseSocket on fakes, opened; `frames` are what it delivered, `posts` what it fetched. */
function opened({ token = '', answer = null } = {}) {
  const clock = new FakeClock();
  const { FakeEventSource, sources } = fakeEventSourceClass();
  const posts = [];
  const host = {
    EventSource: () => FakeEventSource,
    setTimeout: clock.setTimeout,
    token: () => token,
    fetch: (url, init) => {
      posts.push({ url, init, body: JSON.parse(init.body) });
      return answer ? answer(url, init) : Promise.reject(new TypeError('Failed to fetch'));
    },
  };
  const socket = new SseSocket(host);
  const frames = [];
  const closes = [];
  let opens = 0;
  socket.onopen = () => { opens += 1; };
  socket.onmessage = (ev) => frames.push(JSON.parse(ev.data));
  socket.onclose = (ev) => closes.push(ev);
  assert.equal(socket.readyState, 0);
  assert.throws(() => socket.send('{"type":"join","room":"a"}'), /not open/);
  clock.advance(0);
  assert.equal(socket.readyState, 1);
  assert.equal(opens, 1);
  const send = (obj) => { socket.send(JSON.stringify(obj)); clock.advance(0); };
  return { clock, socket, sources, posts, frames, closes, send };
}

function jsonResponse(status, body) {
  return Promise.resolve({ ok: status >= 200 && status < 300, status, json: () => Promise.resolve(body) });
}

test('no stream is opened before a room is joined', () => {
  const { sources } = opened();
  assert.equal(sources.length, 0);
});

test('joins open one stream for every room, with the nick', () => {
  const { sources, send } = opened();
  send({ type: 'join', room: 'a', nick: 'al ice', ref: 1 });
  assert.deepEqual(sources.map((s) => s.url), ['/sse?room=a&nick=al%20ice']);
  send({ type: 'join', room: 'b.c', ref: 2 });
  assert.equal(sources.length, 2);
  assert.ok(sources[0].closed);
  assert.equal(sources[1].url, '/sse?room=a&room=b.c&nick=al%20ice');
});

test('the stream\'s joined carries the client\'s own ref, once', () => {
  const { sources, send, frames } = opened();
  send({ type: 'join', room: 'a', ref: 7 });
  const es = sources[0];
  es.emit('joined', { type: 'joined', room: 'a', ref: 'a', epoch: 'e1', offset: 0 });
  es.emit('message', { type: 'message', room: 'a', offset: 1, text: 'hi' }, 'e1:1');
  es.emit('joined', { type: 'joined', room: 'a', ref: 'a', epoch: 'e1', offset: 1 }); // a reopen
  assert.deepEqual(frames.map((f) => [f.type, f.ref]), [['joined', 7], ['message', undefined], ['joined', undefined]]);
});

test('a reopened stream resumes each room from its last event id', () => {
  const { sources, send } = opened();
  send({ type: 'join', room: 'a', ref: 1 });
  sources[0].emit('message', { type: 'message', room: 'a', offset: 4 }, 'e1:4'); // one room: no name
  send({ type: 'join', room: 'b', ref: 2 });
  sources[1].emit('message', { type: 'message', room: 'b', offset: 2 }, 'a=e1:5,b=e9:2');
  send({ type: 'join', room: 'c', ref: 3 });
  const url = new URL(sources[1].url, 'http://x');
  assert.equal(url.searchParams.get('lastEventId'), 'a=e1:4');
  const resumed = new URL(sources[2].url, 'http://x');
  assert.deepEqual(resumed.searchParams.getAll('room'), ['a', 'b', 'c']);
  assert.equal(resumed.searchParams.get('lastEventId'), 'a=e1:5,b=e9:2');
});

test('a rejoin with since and epoch starts the stream there', () => {
  const { sources, send } = opened();
  send({ type: 'join', room: 'a', since: 12, epoch: 'e3', ref: 1 });
  assert.equal(new URL(sources[0].url, 'http://x').searchParams.get('lastEventId'), 'a=e3:12');
});

test('a leave drops the room from the stream and is answered with left', () => {
  const { sources, send, frames } = opened();
  send({ type: 'join', room: 'a', ref: 1 });
  send({ type: 'join', room: 'b', ref: 2 });
  send({ type: 'leave', room: 'a', ref: 3 });
  assert.deepEqual(frames, [{ type: 'left', room: 'a', ref: 3 }]);
  assert.equal(sources[sources.length - 1].url, '/sse?room=b');
  send({ type: 'leave', room: 'b', ref: 4 });
  assert.ok(sources[sources.length - 1].closed); // no room left: no stream
});

test('a say is published over HTTP with the token, and its answer is an ack', async () => {
  const { send, posts, frames } = opened({ token: 's3cret', answer: () => jsonResponse(201, { offset: 41 }) });
  send({ type: 'nick', nick: 'bob' });
  send({ type: 'say', room: 'a b', text: 'hello', ref: 5 });
  await settle();
  assert.equal(posts[0].url, '/api/rooms/a%20b/messages');
  assert.equal(posts[0].init.method, 'POST');
  assert.equal(posts[0].init.headers.Authorization, 'Bearer s3cret');
  assert.deepEqual(posts[0].body, { nick: 'bob', text: 'hello' });
  assert.deepEqual(frames, [{ type: 'ack', ref: 5, offset: 41 }]);
});

test('a refused or failed publish is an error with the server\'s words', async () => {
  const { send, frames, posts } = opened({
    answer: (url) => (url.includes('full')
      ? jsonResponse(429, { error: 'rate_limited', reason: 'slow down' })
      : Promise.resolve({ ok: false, status: 502, json: () => Promise.reject(new SyntaxError('html')) })),
  });
  send({ type: 'say', room: 'full', text: 'x', ref: 1 });
  send({ type: 'say', room: 'proxy', text: 'y', ref: 2 });
  await settle();
  assert.equal(posts[0].init.headers.Authorization, undefined);
  assert.equal(posts[0].body.nick, 'guest');
  assert.deepEqual(frames, [
    { type: 'error', ref: 1, code: 'rate_limited', reason: 'slow down' },
    { type: 'error', ref: 2, code: 'unavailable', reason: 'HTTP 502' },
  ]);
});

test('an unreachable server is an unavailable error', async () => {
  const { send, frames } = opened();
  send({ type: 'say', room: 'a', text: 'x', ref: 9 });
  await settle();
  assert.deepEqual(frames, [{ type: 'error', ref: 9, code: 'unavailable', reason: 'the server is unreachable' }]);
});

test('a stream the browser gave up on closes the socket like a lost WebSocket', () => {
  const { sources, send, socket, closes } = opened();
  send({ type: 'join', room: 'a', ref: 1 });
  const es = sources[0];
  es.readyState = 0; // the browser is reconnecting by itself: nothing to do
  es.onerror();
  assert.equal(closes.length, 0);
  es.readyState = 2;
  es.onerror();
  assert.deepEqual(closes, [{ code: 1006, reason: 'the event stream failed' }]);
  assert.equal(socket.readyState, 3);
  assert.ok(es.closed);
});

test('close() closes on the next turn, once', () => {
  const { clock, socket, closes } = opened();
  socket.close();
  assert.equal(closes.length, 0);
  clock.advance(0);
  socket.close();
  clock.advance(0);
  assert.deepEqual(closes, [{ code: 1006, reason: 'closed' }]);
});
