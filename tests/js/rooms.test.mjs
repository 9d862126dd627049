// Room state and recovery (portshare/static/client/rooms.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  acceptMessage, acceptOffset, addMessage, addNotice, applyJoined, applyPresence,
  applyPresenceBatch, createRoom, joinCommand, knownRooms, markRead, pushLog, sinceFor,
  sortedMembers, totalUnread,
} from '../../portshare/static/client/rooms.js';
import { LIMITS } from '../../portshare/static/client/wire.js';

/** A room joined once: epoch "e1", the room's offset 10 then, messages up to `offset` seen. */
function joinedRoom(offset = null) {
  const room = createRoom('lobby');
  applyJoined(room, { type: 'joined', room: 'lobby', epoch: 'e1', offset: 10, members: ['a'], count: 1 }, joinCommand(room, 'a'));
  if (offset !== null) acceptMessage(room, { type: 'message', room: 'lobby', epoch: 'e1', offset, text: 'x' }, true);
  return room;
}

test('a first join sends no since; a rejoin sends since = max(offset, floor) and the epoch', () => {
  const room = createRoom('lobby');
  assert.deepEqual(joinCommand(room, 'alice'), { type: 'join', room: 'lobby', nick: 'alice' });
  assert.deepEqual(joinCommand(room, ''), { type: 'join', room: 'lobby' });
  const seen = joinedRoom(12);
  assert.deepEqual(joinCommand(seen, 'alice'), { type: 'join', room: 'lobby', nick: 'alice', since: 12, epoch: 'e1' });
  const quiet = joinedRoom(); // nothing said since: the floor
  assert.equal(sinceFor(quiet), 10);
  quiet.offset = 3; // older than the floor
  assert.equal(sinceFor(quiet), 10);
});

test('a first join sets the epoch, the floor, the members and the count', () => {
  const room = createRoom('lobby');
  const result = applyJoined(room, {
    type: 'joined', room: 'lobby', epoch: 'e1', offset: 7, members: ['a', 3, 'b'], count: 40,
  }, joinCommand(room, 'a'));
  assert.deepEqual(result, { rejoin: false, lost: false, epochChanged: false });
  assert.equal(room.epoch, 'e1');
  assert.equal(room.floor, 7);
  assert.equal(room.offset, null);
  assert.deepEqual(room.members, ['a', 'b']);
  assert.equal(room.count, 40);
  assert.equal(room.status, 'joined');
  assert.equal(room.joinedOnce, true);
});

test('a rejoin that recovered everything keeps the offsets and loses nothing', () => {
  const room = joinedRoom(12);
  const request = joinCommand(room, 'a');
  const result = applyJoined(room, { type: 'joined', room: 'lobby', epoch: 'e1', offset: 15, recovered: true, members: [] }, request);
  assert.deepEqual(result, { rejoin: true, lost: false, epochChanged: false });
  assert.equal(room.offset, 12);
  assert.equal(room.floor, 10);
  assert.equal(room.count, 0); // no count: the members shown
});

test('a rejoin with recovered: false says something was lost', () => {
  const room = joinedRoom(12);
  const result = applyJoined(room, { type: 'joined', room: 'lobby', epoch: 'e1', offset: 900, recovered: false }, joinCommand(room, 'a'));
  assert.deepEqual(result, { rejoin: true, lost: true, epochChanged: false });
});

test('a rejoin into a new epoch starts the offsets again from its floor', () => {
  const room = joinedRoom(12);
  const result = applyJoined(room, { type: 'joined', room: 'lobby', epoch: 'e2', offset: 2, recovered: true }, joinCommand(room, 'a'));
  assert.deepEqual(result, { rejoin: true, lost: true, epochChanged: true });
  assert.equal(room.epoch, 'e2');
  assert.equal(room.offset, null);
  assert.equal(room.floor, 2);
});

test('a message at or below the last offset seen is a duplicate', () => {
  const room = joinedRoom(12);
  assert.equal(acceptOffset(room, { type: 'message', epoch: 'e1', offset: 12 }), false);
  assert.equal(acceptOffset(room, { type: 'message', epoch: 'e1', offset: 11 }), false);
  assert.equal(acceptOffset(room, { type: 'message', epoch: 'e1', offset: 13 }), true);
  assert.equal(room.offset, 13);
  assert.equal(acceptOffset(room, { type: 'message', epoch: 'e1', offset: 13 }), false);
  assert.equal(acceptOffset(room, { type: 'message', text: 'no offset' }), true);
  assert.equal(room.offset, 13);
});

test('a message in a new epoch is new whatever its offset', () => {
  const room = joinedRoom(12);
  assert.equal(acceptOffset(room, { type: 'message', epoch: 'e2', offset: 1 }), true);
  assert.equal(room.epoch, 'e2');
  assert.equal(room.offset, 1);
});

test('a new message goes to the log, and counts as unread unless its room is on screen', () => {
  const room = createRoom('lobby');
  const entry = acceptMessage(room, { type: 'message', offset: 1, ts: 5, nick: 'bob', text: 'hi' }, false);
  assert.deepEqual(entry, { kind: 'message', offset: 1, ts: 5, nick: 'bob', text: 'hi', removed: 0 });
  assert.equal(room.unread, 1);
  assert.equal(acceptMessage(room, { type: 'message', offset: 1, nick: 'bob', text: 'hi' }, false), null);
  assert.equal(room.unread, 1);
  addMessage(room, { type: 'message', text: 42 }, true);
  assert.equal(room.unread, 1);
  assert.deepEqual(room.log.map((e) => e.text), ['hi', '42']);
  markRead(room);
  assert.equal(room.unread, 0);
});

test('the log keeps the last LIMITS.logMax entries and says how many went', () => {
  const room = createRoom('lobby');
  for (let i = 0; i < LIMITS.logMax; i += 1) assert.equal(pushLog(room, { i }), 0);
  assert.equal(addNotice(room, 'one too many', 1).removed, 1);
  assert.equal(room.log.length, LIMITS.logMax);
  assert.equal(room.log[0].i, 1);
  assert.equal(room.log[room.log.length - 1].text, 'one too many');
});

test('presence: joins and leaves change the members and the count, and are logged', () => {
  const room = joinedRoom();
  const entry = applyPresence(room, { type: 'presence', event: 'join', nick: 'b' }, 99);
  assert.deepEqual(entry, { kind: 'presence', event: 'join', nick: 'b', ts: 99, removed: 0 });
  assert.deepEqual(room.members, ['a', 'b']);
  assert.equal(room.count, 2);
  applyPresence(room, { type: 'presence', event: 'join', nick: 'b' }, 100); // another tab of b
  assert.deepEqual(room.members, ['a', 'b']);
  assert.equal(room.count, 3);
  applyPresence(room, { type: 'presence', event: 'leave', nick: 'a' }, 101);
  assert.deepEqual(room.members, ['b']);
  assert.equal(room.count, 2);
  assert.deepEqual(room.log.map((e) => e.event), ['join', 'join', 'leave']);
});

test('a presence batch nets its joins and leaves without logging them', () => {
  const room = joinedRoom();
  applyPresenceBatch(room, { type: 'presence_batch', joined: ['b', 'c', 7], left: ['a', 'zz'], count: 500 });
  assert.deepEqual(room.members, ['b', 'c']);
  assert.equal(room.count, 500);
  applyPresenceBatch(room, { type: 'presence_batch', joined: ['d'] });
  assert.equal(room.count, 3);
  assert.deepEqual(room.log, []);
});

test('members are sorted without regard to case; unread counts add up', () => {
  const room = createRoom('x');
  room.members = ['bob', 'Alice', 'alice', 'Carol'];
  assert.deepEqual(sortedMembers(room), ['Alice', 'alice', 'bob', 'Carol']);
  assert.deepEqual(room.members, ['bob', 'Alice', 'alice', 'Carol']);
  const a = createRoom('a');
  const b = createRoom('b');
  a.unread = 2;
  b.unread = 3;
  assert.equal(totalUnread(new Map([['a', a], ['b', b]])), 5);
});

test('the rooms offered: not joined, the preferred first, then the busiest', () => {
  const listed = [
    { room: 'quiet', members: 0, offset: 0 },
    { room: 'busy', members: 9, offset: 2 },
    { room: 'chatty', members: 1, offset: 500 },
    { room: 'alsochatty', members: 1, offset: 500 },
    { room: 'mine', members: 50, offset: 1 },
    { room: 'bad name', members: 99 },
    { room: 'busy', members: 1 }, // listed twice: the first row counts
    null,
  ];
  const rows = knownRooms(listed, new Set(['mine']), 'lobby', 10);
  assert.deepEqual(rows.map((r) => r.room), ['lobby', 'busy', 'alsochatty', 'chatty', 'quiet']);
  assert.deepEqual(rows[0], { room: 'lobby', members: 0, offset: 0 });
  assert.equal(knownRooms(listed, new Set(), 'lobby', 2).length, 2);
  assert.deepEqual(knownRooms('not a list', new Map([['lobby', {}]]), 'lobby', 5), []);
});
