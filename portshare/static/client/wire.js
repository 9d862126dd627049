/*
 * The chat's wire contract, client side: the subprotocol, the limits the server enforces and
 * the checks that mirror them (so that the person is told before the server refuses), and the
 * parsing of one frame into an event. Pure: no DOM, no timers, no I/O; Node imports it for
 * tests (tests/js/wire.test.mjs).
 *
 * The server's side of the same contract is portshare/wire.py and docs/protocol.md.
 */

export const VERSION = '1';
export const SUBPROTOCOL = 'portshare.chat.v1';
export const LIMITS = Object.freeze({ roomMax: 64, nickMax: 32, textMax: 4096, logMax: 1000 });

const ROOM_RE = /^[A-Za-z0-9._-]+$/;
// "Printable" as Python's str.isprintable(): no control/format/unassigned/private-use
// characters (\p{C}) and no separators (\p{Z}) other than the ASCII space.
const UNPRINTABLE_RE = /[\p{C}\p{Z}]/u;

/**
 * The path the chat's own paths (`/ws`, `/sse`, `/api`) hang under, from the location of the
 * page that loaded the client: its directory ('' for a page at `/`, '/chat' for one at
 * `/chat/`, where the server puts the chat beside a mounted application, `--chat-prefix`).
 */
export function chatBase(location) {
  const path = location && typeof location.pathname === 'string' ? location.pathname : '/';
  return path.slice(0, path.lastIndexOf('/'));
}

/** Length in Unicode code points (what the server counts), not UTF-16 units. */
export function codePointLength(s) {
  let n = 0;
  for (const _ of s) n += 1; // eslint-disable-line no-unused-vars
  return n;
}

/** @return {string|null} a message for the user, or null when the room name is valid. */
export function validateRoom(name) {
  if (typeof name !== 'string' || name.length === 0) return 'Enter a room name.';
  if (name.length > LIMITS.roomMax) {
    return 'A room name is at most ' + LIMITS.roomMax + ' characters (this one has ' + name.length + ').';
  }
  if (!ROOM_RE.test(name)) {
    return 'A room name may only contain letters A–Z and a–z, digits 0–9, “.”, “_” and “-” (no spaces).';
  }
  if (name === '.' || name === '..') return 'A room cannot be called “.” or “..”.';
  return null;
}

/** @return {string|null} a message for the user, or null when the nickname is valid. */
export function validateNick(nick) {
  if (typeof nick !== 'string' || nick.length === 0) return 'Choose a nickname.';
  const n = codePointLength(nick);
  if (n > LIMITS.nickMax) {
    return 'A nickname is at most ' + LIMITS.nickMax + ' characters (this one has ' + n + ').';
  }
  if (UNPRINTABLE_RE.test(nick.replace(/ /g, ''))) {
    return 'A nickname may only contain printable characters (no control, invisible or direction-changing characters).';
  }
  return null;
}

/** @return {string|null} a message for the user, or null when the text can be sent. */
export function validateText(text, max) {
  const limit = max || LIMITS.textMax;
  if (typeof text !== 'string' || text.trim().length === 0) return 'Type a message first.';
  const n = codePointLength(text);
  if (n > limit) return 'A message is at most ' + limit + ' characters (this one has ' + n + ').';
  return null;
}

/**
 * One frame from the server as an event object, or null for anything that is not one (a
 * binary frame, text that is not JSON, JSON without a string `type`). Unknown types are
 * returned as they are: a newer server's events are the caller's to ignore.
 * @param {*} data a WebSocket message's `data`
 * @return {object|null}
 */
export function parseEvent(data) {
  if (typeof data !== 'string') return null;
  let msg;
  try {
    msg = JSON.parse(data);
  } catch (e) {
    return null;
  }
  if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return null;
  return msg;
}

/** Whether an event is a direct reply to a command, which carries that command's `ref`. */
export function isReply(msg) {
  return msg.type === 'joined' || msg.type === 'left' || msg.type === 'ack' || msg.type === 'error';
}
