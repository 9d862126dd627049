/*
 * portshare web chat client: the entry point (index.html loads it as an ES module). Plain
 * browser JavaScript: no build step, no framework. It builds the state, restores what this
 * browser remembers, wires the page's controls to the chat and starts the connection.
 *
 *   client.js             the public client module (docs/client.md): Connection, connect()
 *                         with the chat's paths found from where it was loaded; over
 *   client/wire.js        the wire contract: subprotocol, limits, validation, parsing a frame
 *   client/reconnect.js   backoff and the words for a close
 *   client/rooms.js       room state and recovery (since/epoch, duplicates), members, the log
 *   client/sse.js         the WebSocket's interface over Server-Sent Events + HTTP (the fallback)
 *   client/connection.js  the connection: transports, reconnects, rejoins, refs; events, no DOM
 *   format.js      text for the page (hidden characters, sizes, ages, times)
 *   storage.js     localStorage / sessionStorage that may be unavailable
 *   render.js      the page's DOM
 *   panel.js       the connections panel
 *   chat.js        what actions and connection events do to the page
 *
 * The only global is `window.portshare`, which exposes the state and the logic for
 * debugging and tests.
 */

import * as wire from './client/wire.js';
import * as reconnect from './client/reconnect.js';
import * as rooms from './client/rooms.js';
import * as format from './format.js';
import { Connection } from './client.js';
import { storageGet, storageSet, NICK_KEY, ROOMS_KEY, TOKEN_KEY } from './storage.js';
import { createView } from './render.js';
import { createPanel } from './panel.js';
import { createChat } from './chat.js';

/** The pure functions and constants, as `window.portshare.logic` has always offered them. */
const logic = Object.freeze({
  VERSION: wire.VERSION, SUBPROTOCOL: wire.SUBPROTOCOL, LIMITS: wire.LIMITS, BACKOFF: reconnect.BACKOFF,
  codePointLength: wire.codePointLength, validateRoom: wire.validateRoom,
  validateNick: wire.validateNick, validateText: wire.validateText,
  backoffDelay: reconnect.backoffDelay, attemptAfterClose: reconnect.attemptAfterClose,
  describeClose: reconnect.describeClose, knownRooms: rooms.knownRooms,
  createRoom: rooms.createRoom, sinceFor: rooms.sinceFor, joinCommand: rooms.joinCommand,
  applyJoined: rooms.applyJoined, acceptMessage: rooms.acceptMessage,
  applyPresence: rooms.applyPresence, applyPresenceBatch: rooms.applyPresenceBatch,
  addNotice: rooms.addNotice, pushLog: rooms.pushLog, markRead: rooms.markRead,
  totalUnread: rooms.totalUnread, sortedMembers: rooms.sortedMembers,
  nickColour: format.nickColour, formatBytes: format.formatBytes, formatAge: format.formatAge,
  describeProtocol: format.describeProtocol, peerOf: format.peerOf,
  splitHidden: format.splitHidden, HIDDEN_CHARS: format.HIDDEN_CHARS,
});

const win = window;

const conn = new Connection({ token: () => state.api.token });

/* ---------- state (the connection's parts are the connection's own objects) ---------- */

const state = {
  get nick() { return conn.nick; },
  rooms: conn.rooms, // name -> room state (see rooms.createRoom), in tab order
  current: null,
  conn: conn.state, // see connection.js
  refs: conn.refs, // ref -> {kind: 'join'|'say'|'leave'|'nick', room?, text?, nick?}
  get nextRef() { return conn.nextRef; },
  lastError: null,
  api: {
    open: false,
    token: storageGet('sessionStorage', TOKEN_KEY) || '',
    needsToken: false,
    timer: null,
    gen: 0,
    last: null,
  },
  known: { rooms: [], timer: null, gen: 0, shown: '' },
  membersOpen: false,
};

const view = createView(win, state);
const panel = createPanel(win, state, view);
const chat = createChat(win, state, conn, view, panel);
const el = view.el;

/* ---------- what this browser remembers ---------- */

function restore() {
  let nick = storageGet('localStorage', NICK_KEY) || '';
  if (wire.validateNick(nick)) nick = 'guest-' + String(Math.floor(1000 + Math.random() * 9000));
  conn.nick = nick;
  storageSet('localStorage', NICK_KEY, nick);
  el.nickInput.value = nick;
  try {
    const saved = JSON.parse(storageGet('sessionStorage', ROOMS_KEY) || 'null');
    if (saved && Array.isArray(saved.rooms)) {
      saved.rooms.forEach((name) => {
        if (typeof name === 'string' && !wire.validateRoom(name) && !state.rooms.has(name)) {
          conn.join(name); // not started yet: kept offline, joined once the socket opens
        }
      });
      if (typeof saved.current === 'string' && state.rooms.has(saved.current)) state.current = saved.current;
      else if (state.rooms.size) state.current = state.rooms.keys().next().value;
    }
  } catch (e) { /* ignore a corrupt entry */ }
}

/* ---------- the page's controls ---------- */

function wireControls() {
  el.nickForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    chat.setNick(el.nickInput.value);
  });
  el.nickInput.addEventListener('blur', () => {
    if (el.nickInput.value.trim() !== state.nick) chat.setNick(el.nickInput.value);
  });
  el.joinForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const name = el.roomInput.value.trim();
    if (chat.joinRoom(name)) {
      el.roomInput.value = '';
      el.messageInput.focus();
    }
  });
  el.roomInput.addEventListener('input', () => {
    if (!el.roomError.hidden) view.setFieldError(el.roomInput, el.roomError, null);
  });
  el.tabs.addEventListener('click', (ev) => {
    const target = ev.target instanceof win.Element ? ev.target.closest('button') : null;
    if (!target) return;
    const leave = target.getAttribute('data-leave');
    if (leave !== null) {
      const li = target.closest('li');
      const next = li && (li.nextElementSibling || li.previousElementSibling);
      chat.leaveRoom(leave);
      const focusTo = next && next.querySelector('button[data-room]');
      (focusTo || el.roomInput).focus();
      return;
    }
    const name = target.getAttribute('data-room');
    if (name !== null) chat.switchRoom(name);
  });
  el.messageForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    chat.sendText();
  });
  el.messageInput.addEventListener('input', () => {
    if (!el.messageError.hidden) view.setFieldError(el.messageInput, el.messageError, null);
  });
  el.bannerDismiss.addEventListener('click', view.clearError);
  el.reconnect.addEventListener('click', chat.reconnectNow);
  el.connToggle.addEventListener('click', () => panel.setOpen(!state.api.open));
  el.membersToggle.addEventListener('click', () => chat.setMembersOpen(!state.membersOpen));
  el.sheetClose.addEventListener('click', chat.closeSheet);
  view.doc.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && view.isNarrow() && (state.membersOpen || state.api.open)) {
      ev.preventDefault();
      chat.closeSheet();
    }
  });
  el.known.addEventListener('click', (ev) => {
    const target = ev.target instanceof win.Element ? ev.target.closest('button[data-join]') : null;
    if (!target) return;
    if (chat.joinRoom(target.getAttribute('data-join'))) el.messageInput.focus();
  });
  view.followBottom();
  view.doc.addEventListener('visibilitychange', () => {
    if (view.doc.visibilityState === 'visible') chat.refreshKnown();
  });
  el.tokenForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = el.tokenInput.value.trim();
    if (token) panel.setToken(token);
  });
  el.tokenClear.addEventListener('click', () => panel.setToken(''));
  win.addEventListener('online', chat.reconnectNow);
}

restore();
wireControls();
view.renderAll();
conn.start(); // and once it is open, chat.refreshKnown() reads the server's rooms

win.portshare = {
  version: wire.VERSION,
  state: state,
  logic: logic,
  actions: {
    join: chat.joinRoom,
    leave: chat.leaveRoom,
    switchTo: chat.switchRoom,
    setNick: chat.setNick,
    send: function (text) { el.messageInput.value = text; return chat.sendText(); },
    reconnectNow: chat.reconnectNow,
    transport: function () { return state.conn.transport; },
    setConnectionsOpen: panel.setOpen,
    setMembersOpen: chat.setMembersOpen,
    refreshRooms: chat.refreshKnown,
  },
};
