// The connection (portshare/static/client/connection.js), driven through fake sockets and a fake clock.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  CONNECT_TIMEOUT_MS, Connection, WS_FALLBACK_AFTER, connect,
} from '../../portshare/static/client/connection.js';
import { FakeClock, fakeEventSourceClass, fakeWebSocketClass } from './fakes.mjs';

/** A connection on fakes, recording its events; `random: 0` makes each delay the ceiling. */
function harness(options = {}) {
  const clock = new FakeClock();
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const { FakeEventSource, sources } = fakeEventSourceClass();
  const conn = new Connection({
    nick: 'alice', url: 'ws://chat.example/ws',
    WebSocket: FakeWebSocket, EventSource: FakeEventSource,
    setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, now: clock.now,
    random: () => 0, fetch: () => Promise.reject(new Error('no fetch in this test')),
    ...options,
  });
  const events = [];
  for (const type of ['statechange', 'open', 'close', 'joined', 'message', 'presence',
    'presence_batch', 'left', 'ack', 'error']) {
    conn.addEventListener(type, (ev) => events.push({ type, ...ev.detail, status: conn.state.status }));
  }
  const of = (type) => events.filter((e) => e.type === type);
  const last = () => sockets[sockets.length - 1];
  return { clock, conn, sockets, sources, events, of, last };
}

/** The joined reply to the join command `cmd`. */
function joinedFor(cmd, extra = {}) {
  return { type: 'joined', room: cmd.room, ref: cmd.ref, epoch: 'e1', offset: 0, members: ['alice'], count: 1, recovered: true, ...extra };
}

test('start opens one WebSocket with the chat subprotocol', () => {
  const { conn, sockets, of } = harness();
  assert.equal(conn.state.status, 'connecting');
  conn.start();
  assert.equal(sockets.length, 1);
  assert.equal(sockets[0].url, 'ws://chat.example/ws');
  assert.equal(sockets[0].protocol, 'portshare.chat.v1');
  assert.equal(of('statechange').length, 1);
  assert.equal(conn.isOnline(), false);
});

test('connect() is a started Connection', () => {
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const conn = connect({ url: 'ws://x/ws', WebSocket: FakeWebSocket, setTimeout: () => 0, clearTimeout: () => {} });
  assert.ok(conn instanceof Connection);
  assert.equal(sockets.length, 1);
});

test('rooms wanted before the socket opens are joined when it opens', () => {
  const { conn, last, of } = harness();
  const room = conn.join('lobby');
  assert.equal(room.status, 'offline');
  conn.start();
  assert.deepEqual(last().sent, []);
  last().open();
  assert.equal(conn.state.status, 'online');
  assert.ok(conn.isOnline());
  assert.deepEqual(last().sent, [{ type: 'join', room: 'lobby', nick: 'alice', ref: 1 }]);
  assert.equal(room.status, 'joining');
  assert.equal(room.pendingJoin.ref, 1);
  assert.deepEqual(of('open').map((e) => e.status), ['online']);
  // the joins are on their way before anyone hears of the open
  assert.deepEqual(of('statechange').map((e) => e.status), ['connecting', 'online']);
});

test('a joined reply is applied to its room and reported', () => {
  const { conn, last, of } = harness();
  conn.start();
  last().open();
  const room = conn.join('lobby');
  const cmd = last().sent[0];
  last().deliver(joinedFor(cmd, { offset: 4, members: ['alice', 'bob'], count: 2 }));
  assert.equal(room.status, 'joined');
  assert.equal(room.floor, 4);
  assert.deepEqual(room.members, ['alice', 'bob']);
  const [joined] = of('joined');
  assert.equal(joined.room, room);
  assert.deepEqual(joined.result, { rejoin: false, lost: false, epochChanged: false });
  assert.equal(conn.refs.size, 0);
  conn.join('lobby'); // already in: nothing more is sent
  assert.equal(last().sent.length, 1);
});

test('messages are reported once each: duplicates and strangers\' rooms are dropped', () => {
  const { conn, last, of } = harness();
  conn.start();
  last().open();
  conn.join('lobby');
  last().deliver(joinedFor(last().sent[0]));
  const said = (offset) => ({ type: 'message', room: 'lobby', epoch: 'e1', offset, nick: 'bob', text: 't' + offset, ts: 1 });
  last().deliver(said(1));
  last().deliver(said(2));
  last().deliver(said(2));
  last().deliver(said(1));
  last().deliver({ ...said(3), room: 'elsewhere' });
  last().deliver('not json');
  last().deliver({ type: 'from_a_newer_server', room: 'lobby' });
  assert.deepEqual(of('message').map((e) => e.msg.offset), [1, 2]);
  assert.equal(conn.rooms.get('lobby').offset, 2);
});

test('presence changes the member list before it is reported', () => {
  const { conn, last, of } = harness();
  conn.start();
  last().open();
  const room = conn.join('lobby');
  last().deliver(joinedFor(last().sent[0]));
  const seen = [];
  conn.addEventListener('presence', () => seen.push([...room.members]));
  last().deliver({ type: 'presence', room: 'lobby', event: 'join', nick: 'bob' });
  last().deliver({ type: 'presence_batch', room: 'lobby', joined: ['carol'], left: ['alice'], count: 2 });
  assert.deepEqual(seen, [['alice', 'bob']]);
  assert.deepEqual(room.members, ['bob', 'carol']);
  assert.equal(of('presence').length, 1);
  assert.equal(of('presence_batch').length, 1);
});

test('a say is sent with a ref; its ack is matched to it, a string ref too', () => {
  const { conn, last, of } = harness();
  conn.start();
  last().open();
  assert.ok(conn.say('lobby', 'hello'));
  const cmd = last().sent[0];
  assert.deepEqual(cmd, { type: 'say', room: 'lobby', text: 'hello', ref: 1 });
  last().deliver({ type: 'ack', ref: String(cmd.ref), offset: 9 });
  assert.deepEqual(of('ack')[0].info, { kind: 'say', room: 'lobby', text: 'hello' });
  assert.equal(conn.refs.size, 0);
});

test('nothing is sent while offline', () => {
  const { conn, last } = harness();
  conn.start();
  assert.equal(conn.say('lobby', 'hello'), false);
  assert.equal(conn.send({ type: 'nick', nick: 'x' }), false);
  assert.equal(conn.refs.size, 0);
  assert.deepEqual(last().sent, []);
});

test('a nick change is sent when online; only the latest one keeps its ref', () => {
  const { conn, last } = harness();
  conn.setNick('offline-name'); // not online: remembered for the joins
  conn.start();
  last().open();
  conn.join('lobby');
  assert.equal(last().sent[0].nick, 'offline-name');
  conn.setNick('bob');
  conn.setNick('bob'); // the same again: nothing to send
  conn.setNick('carol');
  assert.deepEqual(last().sent.slice(1).map((c) => c.nick), ['bob', 'carol']);
  assert.deepEqual([...conn.refs.values()].filter((i) => i.kind === 'nick'), [{ kind: 'nick', nick: 'carol' }]);
});

test('leave tells the server and forgets the room; its reply is our own', () => {
  const { conn, last, of } = harness();
  conn.start();
  last().open();
  conn.join('lobby');
  assert.ok(conn.leave('lobby'));
  assert.equal(conn.rooms.has('lobby'), false);
  const cmd = last().sent[1];
  assert.deepEqual(cmd, { type: 'leave', room: 'lobby', ref: 2 });
  last().deliver({ type: 'left', room: 'lobby', ref: cmd.ref });
  assert.deepEqual(of('left').map((e) => [e.name, e.own]), [['lobby', true]]);
  assert.equal(conn.leave('lobby'), false);
});

test('a left the server sent on its own removes the room', () => {
  const { conn, last, of } = harness();
  conn.start();
  last().open();
  const room = conn.join('lobby');
  last().deliver(joinedFor(last().sent[0]));
  last().deliver({ type: 'left', room: 'lobby' });
  assert.equal(conn.rooms.has('lobby'), false);
  assert.deepEqual(of('left').map((e) => [e.name, e.room, e.own]), [['lobby', room, false]]);
});

test('a refused first join drops the room; a refused rejoin marks it failed', () => {
  const { conn, last, of } = harness();
  conn.start();
  last().open();
  conn.join('private');
  last().deliver({ type: 'error', ref: last().sent[0].ref, code: 'forbidden', reason: 'no' });
  assert.equal(conn.rooms.has('private'), false);
  assert.equal(of('error')[0].dropped, true);
  assert.deepEqual(of('error')[0].info, { kind: 'join', room: 'private' });

  const room = conn.join('lobby');
  last().deliver(joinedFor(last().sent[1]));
  last().drop(1006);
  harnessReopen(conn, last);
  const rejoin = last().sent[0];
  assert.equal(rejoin.since, 0);
  last().deliver({ type: 'error', ref: rejoin.ref, code: 'forbidden', reason: 'not any more' });
  assert.equal(room.status, 'failed');
  assert.equal(conn.rooms.get('lobby'), room);
  assert.equal(of('error')[1].dropped, false);
  assert.equal(conn.leave('lobby'), true);
  assert.equal(last().sent.length, 1); // a failed room is left without telling the server
});

/** Let the scheduled reconnect happen, and open its socket. */
function harnessReopen(conn, last) {
  const before = last();
  conn.reconnectNow();
  assert.notEqual(last(), before);
  last().open();
}

test('a say refused with not_joined rejoins its room', () => {
  const { conn, last, of } = harness();
  conn.start();
  last().open();
  const room = conn.join('lobby');
  last().deliver(joinedFor(last().sent[0]));
  conn.say('lobby', 'hi');
  last().deliver({ type: 'error', ref: last().sent[1].ref, code: 'not_joined', reason: 'join first' });
  assert.equal(of('error')[0].info.kind, 'say');
  assert.equal(of('error')[0].room, room);
  assert.equal(last().sent[2].type, 'join');
  assert.equal(room.status, 'joining');
});

test('a close reports the unconfirmed says, takes every room offline and schedules a retry', () => {
  const { clock, conn, last, of } = harness();
  conn.start();
  last().open();
  const room = conn.join('lobby');
  last().deliver(joinedFor(last().sent[0]));
  conn.say('lobby', 'lost in transit');
  conn.say('gone', 'a room we are not in');
  clock.advance(5000);
  last().drop(1001, 'server shutting down');
  const [closed] = of('close');
  assert.equal(closed.code, 1001);
  assert.equal(closed.reason, 'server shutting down');
  assert.deepEqual(closed.unconfirmed, [{ room: 'lobby', text: 'lost in transit' }]);
  assert.equal(room.status, 'offline');
  assert.equal(conn.refs.size, 0);
  assert.deepEqual(conn.state.lastClose, { code: 1001, reason: 'server shutting down' });
  assert.equal(conn.state.status, 'reconnecting');
  assert.equal(conn.state.attempt, 1);
  assert.equal(conn.state.retryAt, clock.now() + 500);
  assert.notEqual(conn.state.retryTimer, null);
});

test('a reconnect rejoins with since and epoch, and recovers what was said meanwhile', () => {
  const { clock, conn, sockets, last, of } = harness();
  conn.start();
  last().open();
  const room = conn.join('lobby');
  last().deliver(joinedFor(last().sent[0], { offset: 3 }));
  last().deliver({ type: 'message', room: 'lobby', epoch: 'e1', offset: 4, nick: 'bob', text: 'before' });
  clock.advance(5000);
  last().drop(1006);
  clock.advance(499);
  assert.equal(sockets.length, 1);
  clock.advance(1);
  assert.equal(sockets.length, 2);
  assert.equal(conn.state.status, 'reconnecting');
  last().open();
  assert.deepEqual(last().sent, [{ type: 'join', room: 'lobby', nick: 'alice', since: 4, epoch: 'e1', ref: 2 }]);
  last().deliver(joinedFor(last().sent[0], { offset: 6 }));
  last().deliver({ type: 'message', room: 'lobby', epoch: 'e1', offset: 4, text: 'before' }); // replayed twice
  last().deliver({ type: 'message', room: 'lobby', epoch: 'e1', offset: 5, text: 'meanwhile' });
  assert.deepEqual(of('message').map((e) => e.msg.text), ['before', 'meanwhile']);
  assert.deepEqual(of('joined')[1].result, { rejoin: true, lost: false, epochChanged: false });
  assert.equal(room.floor, 3);
  assert.equal(conn.state.attempt, 0);
  assert.equal(conn.state.lastClose, null);
});

test('failed attempts back off, and a connection that dies at once does not reset them', () => {
  const { clock, conn, last } = harness({ EventSource: undefined }); // no fallback here
  conn.start();
  const delays = [];
  for (let i = 0; i < 4; i += 1) {
    last().drop(1006);
    delays.push(conn.state.retryAt - clock.now());
    clock.advance(delays[i]);
  }
  assert.deepEqual(delays, [500, 1000, 2000, 4000]);
  assert.equal(conn.state.failedSince, 4);
  last().open();
  assert.equal(conn.state.attempt, 0);
  clock.advance(200);
  last().drop(1006); // open for 0.2 s: still flapping, so the wait goes on growing
  assert.equal(conn.state.retryAt - clock.now(), 8000);
  assert.deepEqual(conn.state.lastClose, { code: 1006, reason: '' });
  assert.equal(conn.state.failedSince, 0);
});

test('a socket stuck connecting is closed after CONNECT_TIMEOUT_MS', () => {
  const { clock, conn, last } = harness();
  conn.start();
  clock.advance(CONNECT_TIMEOUT_MS - 1);
  assert.equal(last().closeCalls, 0);
  clock.advance(1);
  assert.equal(last().closeCalls, 1);
});

test('reconnectNow only cuts a scheduled wait short', () => {
  const { conn, sockets, last } = harness();
  conn.reconnectNow(); // not started: nothing to cut short
  assert.equal(sockets.length, 0);
  conn.start();
  conn.reconnectNow(); // connecting: nothing to cut short
  assert.equal(sockets.length, 1);
  last().drop(1006);
  conn.reconnectNow();
  assert.equal(sockets.length, 2);
  assert.equal(conn.state.retryTimer, null);
  conn.reconnectNow(); // a socket is being opened already
  assert.equal(sockets.length, 2);
});

test('WebSockets that never open fall back to SSE + HTTP after WS_FALLBACK_AFTER retries', () => {
  const { clock, conn, sockets, sources, last } = harness();
  conn.join('lobby');
  conn.start();
  for (let i = 0; i < WS_FALLBACK_AFTER; i += 1) {
    last().drop(1006);
    assert.equal(conn.state.transport, 'websocket');
    clock.advance(conn.state.retryAt - clock.now());
  }
  last().drop(1006); // the first attempt and WS_FALLBACK_AFTER retries never opened
  assert.equal(conn.state.transport, 'sse');
  assert.equal(conn.state.attempt, 1); // counted afresh for the new transport
  clock.advance(conn.state.retryAt - clock.now()); // the SseSocket opens, then its stream
  assert.equal(sockets.length, WS_FALLBACK_AFTER + 1);
  assert.equal(conn.state.status, 'online');
  assert.equal(sources.length, 1);
  assert.equal(sources[0].url, '/sse?room=lobby&nick=alice');
});

test('under a prefix (base), the WebSocket, the stream and the publish API are all under it', () => {
  const location = { protocol: 'https:', host: 'app.example', pathname: '/chat/' };
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'location');
  Object.defineProperty(globalThis, 'location', { value: location, configurable: true });
  try {
    const { clock, conn, sockets, sources, last } = harness({ url: undefined });
    conn.join('lobby');
    conn.start();
    assert.equal(sockets[0].url, 'wss://app.example/chat/ws');
    for (let i = 0; i <= WS_FALLBACK_AFTER; i += 1) {
      last().drop(1006);
      clock.advance(conn.state.retryAt - clock.now());
    }
    assert.equal(conn.state.transport, 'sse');
    assert.equal(sources[0].url, '/chat/sse?room=lobby&nick=alice');
    const explicit = harness({ url: undefined, base: '/x' });
    explicit.conn.start();
    assert.equal(explicit.sockets[0].url, 'wss://app.example/x/ws');
  } finally {
    if (saved) Object.defineProperty(globalThis, 'location', saved);
    else delete globalThis.location;
  }
});

test('a WebSocket that opened once rules out the fallback', () => {
  const { clock, conn, last } = harness();
  conn.start();
  last().open();
  clock.advance(5000);
  for (let i = 0; i < WS_FALLBACK_AFTER + 2; i += 1) {
    last().drop(1006);
    clock.advance(conn.state.retryAt - clock.now());
  }
  assert.equal(conn.state.transport, 'websocket');
});

test('a browser without WebSocket goes to SSE at once', () => {
  const { clock, conn, sockets } = harness({ WebSocket: undefined });
  conn.start();
  assert.equal(conn.state.transport, 'sse');
  assert.equal(sockets.length, 0);
  clock.advance(0);
  assert.equal(conn.state.status, 'online');
});

test('a WebSocket that cannot even be made counts as a failed attempt', () => {
  const { conn } = harness({
    EventSource: undefined,
    WebSocket: function () { throw new Error('SecurityError'); },
  });
  conn.start();
  assert.equal(conn.state.status, 'reconnecting');
  assert.equal(conn.state.failedSince, 1);
  assert.equal(conn.state.transport, 'websocket'); // nothing to fall back to
});

test('events of a socket that was replaced are ignored', () => {
  const { conn, sockets, of } = harness();
  conn.start();
  const old = sockets[0];
  old.drop(1006);
  conn.reconnectNow();
  old.deliver({ type: 'left', room: 'lobby' });
  old.onclose({ code: 1000 });
  assert.equal(of('close').length, 1);
  assert.equal(sockets.length, 2);
});
