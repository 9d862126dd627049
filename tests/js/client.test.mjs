// The public client module (portshare/static/client.js): where it finds the chat, what it
// exports, and the connection's own calls a page of yours uses (close, join with resume).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import * as client from '../../portshare/static/client.js';
import { Connection as Internal } from '../../portshare/static/client/connection.js';
import { FakeClock, fakeWebSocketClass } from './fakes.mjs';

const { Connection, chatHome, connect } = client;

test('the public names are exactly the documented ones', () => {
  assert.deepEqual(Object.keys(client).sort(), [
    'Connection', 'ConnectionEvent', 'LIMITS', 'SUBPROTOCOL', 'VERSION', 'chatHome', 'connect',
    'describeClose', 'validateNick', 'validateRoom', 'validateText',
  ]);
});

test('chatHome: the chat is under the directory client.js was served from', () => {
  const page = { origin: 'http://app.example:8080' };
  assert.deepEqual(chatHome('http://app.example:8080/chat/client.js', page),
    { base: '/chat', url: 'ws://app.example:8080/chat/ws' });
  assert.deepEqual(chatHome('http://app.example:8080/client.js', page),
    { base: '', url: 'ws://app.example:8080/ws' });
  assert.deepEqual(chatHome('http://app.example:8080/a/b/client.js?v=2', page),
    { base: '/a/b', url: 'ws://app.example:8080/a/b/ws' });
});

test('chatHome: https gives wss, and another origin gives an absolute base', () => {
  assert.deepEqual(chatHome('https://app.example/chat/client.js', { origin: 'https://app.example' }),
    { base: '/chat', url: 'wss://app.example/chat/ws' });
  assert.deepEqual(chatHome('https://chat.example/t/client.js', { origin: 'https://app.example' }),
    { base: 'https://chat.example/t', url: 'wss://chat.example/t/ws' });
  assert.deepEqual(chatHome('http://chat.example/client.js', null),
    { base: 'http://chat.example', url: 'ws://chat.example/ws' });
});

test("client.js's Connection is the web client's, with the page's options kept", () => {
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const clock = new FakeClock();
  const conn = connect({
    nick: 'ann', base: '/x', url: 'ws://h/x/ws', WebSocket: FakeWebSocket,
    setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, now: clock.now,
  });
  assert.ok(conn instanceof Connection && conn instanceof Internal);
  assert.equal(sockets.length, 1);
  assert.equal(sockets[0].url, 'ws://h/x/ws');
  assert.equal(conn.host.base(), '/x');
  assert.equal(conn.nick, 'ann');
});

test('without base or url, a Connection talks to where client.js came from', () => {
  const conn = new Connection({});
  const home = chatHome(new URL('../../portshare/static/client.js', import.meta.url).href, null);
  assert.equal(conn.host.url(), home.url);
  assert.equal(conn.host.base(), home.base);
  assert.ok(home.url.endsWith('/portshare/static/ws'), home.url);
});

/** A started connection on fakes whose socket is open. */
function online() {
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const clock = new FakeClock();
  const conn = connect({
    nick: 'ann', url: 'ws://h/ws', base: '', WebSocket: FakeWebSocket, random: () => 0,
    setTimeout: clock.setTimeout, clearTimeout: clock.clearTimeout, now: clock.now,
  });
  sockets[0].open();
  return { conn, sockets, clock };
}

test('join with resume asks for what was said since the given offset, in that epoch', () => {
  const { conn, sockets } = online();
  const room = conn.join('lobby', { since: 41, epoch: 'e7' });
  assert.deepEqual(sockets[0].sent, [{ type: 'join', room: 'lobby', nick: 'ann', since: 41, epoch: 'e7', ref: 1 }]);
  sockets[0].deliver({ type: 'joined', room: 'lobby', ref: 1, epoch: 'e7', offset: 43, members: ['ann'], recovered: true });
  const seen = [];
  conn.addEventListener('message', (e) => seen.push(e.detail.msg.offset));
  for (const offset of [41, 42, 43]) sockets[0].deliver({ type: 'message', room: 'lobby', offset, nick: 'b', text: 't', ts: 1 });
  assert.deepEqual(seen, [42, 43]); // 41 was seen on the earlier visit
  assert.equal(room.status, 'joined');
});

test('join with a resume that is not an offset is a plain first join', () => {
  const { conn, sockets } = online();
  conn.join('a', { since: 'x' });
  conn.join('b', { since: -1, epoch: 'e' });
  assert.deepEqual(sockets[0].sent.map((c) => c.since), [undefined, undefined]);
});

test('close() stops for good: the socket closed, no reconnect, start() comes back and rejoins', () => {
  const { conn, sockets, clock } = online();
  conn.join('lobby');
  sockets[0].deliver({ type: 'joined', room: 'lobby', ref: 1, epoch: 'e1', offset: 5, members: ['ann'] });
  const states = [];
  conn.addEventListener('statechange', () => states.push(conn.state.status));
  conn.close();
  assert.equal(sockets[0].closeCalls, 1);
  assert.equal(conn.state.status, 'closed');
  assert.equal(conn.isOnline(), false);
  assert.equal(conn.say('lobby', 'x'), false);
  sockets[0].drop(1000); // its close event is no longer the connection's
  conn.reconnectNow();
  clock.advance(60_000);
  assert.equal(sockets.length, 1);
  assert.deepEqual(clock.pending(), []);
  assert.deepEqual(states, ['closed']);
  assert.equal(conn.rooms.get('lobby').status, 'offline');
  conn.start();
  assert.equal(sockets.length, 2);
  sockets[1].open();
  assert.deepEqual(sockets[1].sent.map(({ ref, ...cmd }) => cmd), [{ type: 'join', room: 'lobby', nick: 'ann', since: 5, epoch: 'e1' }]);
});
