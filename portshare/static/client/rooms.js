/*
 * Room state and recovery. Pure: no DOM, no timers, no I/O; every function takes a room
 * object (see createRoom) and the event, and changes the room or returns what to show. Node
 * imports it for tests (tests/js/rooms.test.mjs).
 *
 * Theory of operation
 * -------------------
 * Each room remembers
 *
 *   epoch   the server's name for the history its offsets belong to (from `joined`);
 *   offset  the highest message offset accepted in that epoch (null: none yet);
 *   floor   the room's last offset when we first joined it (from `joined.offset`).
 *
 * A rejoin sends `since` = max(offset, floor) and `epoch`, so the server replays exactly what
 * was said while we were away. Any message whose offset is <= `offset` (same epoch) is a
 * duplicate and dropped. `recovered: false` (or a changed epoch) on a rejoin means that
 * something was lost: applyJoined says so, and the page adds a visible notice.
 *
 * The recovery fields, the status and the member list are the connection's (connection.js
 * applies `joined`, `presence` and `presence_batch` and drops duplicates with acceptOffset);
 * the log and the unread count are the page's (addMessage, addPresence, addNotice).
 */

import { LIMITS, validateRoom } from './wire.js';

/** Fresh per-room state. */
export function createRoom(name) {
  return {
    name: name,
    status: 'joining', // 'offline' | 'joining' | 'joined' | 'failed'
    joinedOnce: false,
    epoch: null,
    offset: null,
    floor: null,
    members: [],
    count: 0,
    unread: 0,
    log: [],
    pendingJoin: null,
  };
}

/** The `since` to send when (re)joining, or null on a first join. */
export function sinceFor(room) {
  if (!room.joinedOnce) return null;
  const a = Number.isInteger(room.offset) ? room.offset : null;
  const b = Number.isInteger(room.floor) ? room.floor : null;
  if (a === null) return b;
  if (b === null) return a;
  return Math.max(a, b);
}

/** The join command for a room: a rejoin carries `since` and `epoch`. */
export function joinCommand(room, nick) {
  const msg = { type: 'join', room: room.name };
  if (nick) msg.nick = nick;
  const since = sinceFor(room);
  if (since !== null) {
    msg.since = since;
    if (room.epoch !== null && room.epoch !== undefined) msg.epoch = room.epoch;
  }
  return msg;
}

/**
 * Apply a `joined` reply to the room.
 * @param {object} request the join command that was sent (or null)
 * @return {{rejoin: boolean, lost: boolean, epochChanged: boolean}}
 */
export function applyJoined(room, msg, request) {
  const rejoin = !!request && request.since !== undefined;
  const hasEpoch = msg.epoch !== undefined && msg.epoch !== null;
  const epochChanged = rejoin && hasEpoch && room.epoch !== null && msg.epoch !== room.epoch;
  const lost = rejoin && (msg.recovered === false || epochChanged);
  if (hasEpoch) room.epoch = msg.epoch;
  if (!rejoin || epochChanged) {
    // First join (or history lost): everything from here on is new to us.
    if (epochChanged) room.offset = null;
    if (Number.isInteger(msg.offset)) room.floor = msg.offset;
  }
  room.members = Array.isArray(msg.members) ? msg.members.filter((m) => typeof m === 'string') : [];
  room.count = Number.isInteger(msg.count) ? msg.count : room.members.length;
  room.status = 'joined';
  room.joinedOnce = true;
  room.pendingJoin = null;
  return { rejoin: rejoin, lost: lost, epochChanged: epochChanged };
}

/** Append an entry to the room's log, keeping at most LIMITS.logMax. @return removed count */
export function pushLog(room, entry) {
  room.log.push(entry);
  let removed = 0;
  while (room.log.length > LIMITS.logMax) {
    room.log.shift();
    removed += 1;
  }
  return removed;
}

/**
 * Note a `message` event's epoch and offset, unless it is a duplicate.
 * @return {boolean} whether the message is new (false: already accepted, drop it)
 */
export function acceptOffset(room, msg) {
  const hasOffset = Number.isInteger(msg.offset);
  if (msg.epoch !== undefined && msg.epoch !== null && msg.epoch !== room.epoch) {
    if (room.epoch !== null) room.offset = null; // a new history: old offsets mean nothing
    room.epoch = msg.epoch;
  }
  if (hasOffset && room.offset !== null && msg.offset <= room.offset) return false;
  if (hasOffset) room.offset = msg.offset;
  return true;
}

/**
 * Add a (new) `message` event to the room's log.
 * @param {boolean} isCurrent whether the room is the one on screen (no unread count then)
 * @return {object} the new log entry
 */
export function addMessage(room, msg, isCurrent) {
  const hasOffset = Number.isInteger(msg.offset);
  const entry = {
    kind: 'message',
    offset: hasOffset ? msg.offset : null,
    ts: typeof msg.ts === 'number' ? msg.ts : null,
    nick: typeof msg.nick === 'string' ? msg.nick : '',
    text: typeof msg.text === 'string' ? msg.text : String(msg.text),
  };
  entry.removed = pushLog(room, entry);
  if (!isCurrent) room.unread += 1;
  return entry;
}

/**
 * Accept a `message` event unless it is a duplicate (acceptOffset, then addMessage).
 * @param {boolean} isCurrent whether the room is the one on screen (no unread count then)
 * @return {object|null} the new log entry, or null for a duplicate
 */
export function acceptMessage(room, msg, isCurrent) {
  return acceptOffset(room, msg) ? addMessage(room, msg, isCurrent) : null;
}

/** Apply a `presence` event to the member list and count. */
export function applyMembership(room, msg) {
  const nick = typeof msg.nick === 'string' ? msg.nick : '';
  if (msg.event === 'join') {
    if (room.members.indexOf(nick) === -1) room.members.push(nick);
    room.count = Math.max(room.count + 1, room.members.length);
  } else if (msg.event === 'leave') {
    const i = room.members.indexOf(nick);
    if (i !== -1) room.members.splice(i, 1);
    room.count = Math.max(room.count - 1, room.members.length);
  }
}

/** Add a `presence` event to the room's log ("alice joined"). @return the log entry */
export function addPresence(room, msg, now) {
  const nick = typeof msg.nick === 'string' ? msg.nick : '';
  const entry = { kind: 'presence', event: msg.event === 'leave' ? 'leave' : 'join', nick: nick, ts: now };
  entry.removed = pushLog(room, entry);
  return entry;
}

/** Apply a `presence` event to the member list and the log. @return the log entry */
export function applyPresence(room, msg, now) {
  applyMembership(room, msg);
  return addPresence(room, msg, now);
}

/**
 * Apply a `presence_batch` event (a big room's joins and leaves over an interval, net) to
 * the member list and count. It adds no log entry: in a big room, a line per join would
 * bury the conversation.
 */
export function applyPresenceBatch(room, msg) {
  const nicks = (list) => (Array.isArray(list) ? list.filter((m) => typeof m === 'string') : []);
  nicks(msg.left).forEach((nick) => {
    const i = room.members.indexOf(nick);
    if (i !== -1) room.members.splice(i, 1);
  });
  nicks(msg.joined).forEach((nick) => {
    if (room.members.indexOf(nick) === -1) room.members.push(nick);
  });
  room.count = Number.isInteger(msg.count) ? Math.max(msg.count, room.members.length) : room.members.length;
}

/** Append a notice to the room log. @return the log entry */
export function addNotice(room, text, now) {
  const entry = { kind: 'notice', text: text, ts: now };
  entry.removed = pushLog(room, entry);
  return entry;
}

export function markRead(room) {
  room.unread = 0;
}

export function totalUnread(rooms) {
  let n = 0;
  rooms.forEach((r) => { n += r.unread; });
  return n;
}

/** Members for display: sorted case-insensitively, duplicates kept. */
export function sortedMembers(room) {
  return room.members.slice().sort((a, b) => a.localeCompare(b, undefined, { sensitivity: 'base' }) || (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The rooms to offer for joining with one click: the server's rooms (rows of
 * `GET /api/rooms`) that are not joined yet, `preferred` first (offered even when the
 * server does not have it yet), then the busiest, the most talked-in, and by name.
 * @param {Array} listed the `rooms` of `GET /api/rooms` (anything invalid is skipped)
 * @param {{has: function(string): boolean}} joined the rooms already joined (a Map or Set)
 * @param {string|null} preferred the room to offer always, e.g. "lobby"
 * @param {number} max how many to return at most
 * @return {Array<{room: string, members: number, offset: number}>}
 */
export function knownRooms(listed, joined, preferred, max) {
  const seen = new Map();
  (Array.isArray(listed) ? listed : []).forEach((r) => {
    if (!r || typeof r.room !== 'string' || validateRoom(r.room) || seen.has(r.room)) return;
    seen.set(r.room, {
      room: r.room,
      members: Number.isInteger(r.members) && r.members > 0 ? r.members : 0,
      offset: Number.isInteger(r.offset) && r.offset > 0 ? r.offset : 0,
    });
  });
  if (preferred && !seen.has(preferred)) seen.set(preferred, { room: preferred, members: 0, offset: 0 });
  const rows = Array.from(seen.values()).filter((r) => !joined.has(r.room));
  rows.sort((a, b) => (b.room === preferred) - (a.room === preferred) ||
    b.members - a.members || b.offset - a.offset || (a.room < b.room ? -1 : a.room > b.room ? 1 : 0));
  return rows.slice(0, max);
}
