/*
 * What the person's actions and the connection's events do to the page: joining, leaving and
 * switching rooms, the nickname, sending, the room log and unread counts, errors in words,
 * the rooms on this server, and the sheets of a narrow screen. The connection (connection.js)
 * keeps the rooms' protocol state; this module adds what is only shown (rooms.js: the log,
 * unread counts, notices) and renders (render.js).
 *
 * Rooms on this server: `GET /api/rooms` is read each time a connection opens (the first one
 * included), after leaving a room, when the tab becomes visible again and every KNOWN_POLL_MS
 * while it is visible. The rooms not joined yet are listed to join with one click, with
 * DEFAULT_ROOM ("lobby") always among them.
 */

import { LIMITS, chatBase, validateNick, validateRoom, validateText } from './client/wire.js';
import { describeClose } from './client/reconnect.js';
import { addMessage, addNotice, addPresence, markRead } from './client/rooms.js';
import { storageSet, NICK_KEY, ROOMS_KEY } from './storage.js';

const KNOWN_POLL_MS = 60000;
// how often the "Reconnecting in 3 s" countdown is redrawn
const TICK_MS = 250;

/**
 * @param {Window} win the window of index.html
 * @param {object} state the client's state (see main.js)
 * @param {Connection} conn the connection (connection.js), not started yet
 * @param {object} view the page (render.js)
 * @param {object} panel the connections panel (panel.js)
 */
export function createChat(win, state, conn, view, panel) {
  const el = view.el;
  const currentRoom = view.currentRoom;

  function saveRooms() {
    storageSet('sessionStorage', ROOMS_KEY, JSON.stringify({
      rooms: Array.from(state.rooms.keys()),
      current: state.current,
    }));
  }

  /* ---------- what the person does ---------- */

  function joinRoom(name) {
    const problem = validateRoom(name);
    if (problem) {
      view.setFieldError(el.roomInput, el.roomError, problem);
      return false;
    }
    view.setFieldError(el.roomInput, el.roomError, null);
    conn.join(name);
    switchRoom(name);
    saveRooms();
    return true;
  }

  function leaveRoom(name) {
    if (!state.rooms.has(name)) return;
    const names = Array.from(state.rooms.keys());
    const idx = names.indexOf(name);
    conn.leave(name);
    if (state.current === name) {
      const rest = names.filter((n) => n !== name);
      state.current = rest.length ? rest[Math.min(idx, rest.length - 1)] : null;
      const now = currentRoom();
      if (now) markRead(now);
      view.renderAll();
    } else {
      view.renderTabs();
    }
    saveRooms();
    refreshKnown();
  }

  function switchRoom(name) {
    if (!state.rooms.has(name)) return;
    state.current = name;
    markRead(state.rooms.get(name));
    view.setFieldError(el.messageInput, el.messageError, null);
    view.renderAll();
    view.revealTab(name);
    saveRooms();
  }

  function setNick(value) {
    const nick = value.trim();
    const problem = validateNick(nick);
    if (problem) {
      view.setFieldError(el.nickInput, el.nickError, problem);
      return false;
    }
    view.setFieldError(el.nickInput, el.nickError, null);
    el.nickInput.value = nick;
    if (nick === state.nick) return true;
    conn.setNick(nick);
    storageSet('localStorage', NICK_KEY, nick);
    view.renderMembers();
    return true;
  }

  function sendText() {
    const room = currentRoom();
    const text = el.messageInput.value;
    const fail = (msg) => { view.setFieldError(el.messageInput, el.messageError, msg); return false; };
    if (!room) return fail('Join a room first.');
    const problem = validateText(text, LIMITS.textMax);
    if (problem) return fail(problem);
    if (!conn.isOnline()) return fail('Not connected – your message was not sent (it is still in the box).');
    if (room.status !== 'joined') return fail('Still joining #' + room.name + ' – try again in a moment.');
    if (!conn.say(room.name, text)) return fail('Could not send – the connection is closing.');
    el.messageInput.value = '';
    view.setFieldError(el.messageInput, el.messageError, null);
    return true;
  }

  /** Drop a room the server refused to let us into; another one is shown. */
  function roomGone(name) {
    if (state.current === name) {
      const first = state.rooms.keys().next();
      state.current = first.done ? null : first.value;
    }
    view.renderAll();
    saveRooms();
  }

  /* ---------- what the connection says ---------- */

  conn.addEventListener('statechange', () => {
    view.renderConnState();
    tick();
  });

  // The countdown of "Reconnecting in 3 s" runs while a retry is scheduled.
  let tickTimer = null;
  function tick() {
    if (state.conn.retryAt !== null && tickTimer === null) {
      tickTimer = win.setInterval(() => {
        if (state.conn.retryAt === null) {
          win.clearInterval(tickTimer);
          tickTimer = null;
        }
        view.renderConnState();
      }, TICK_MS);
    } else if (state.conn.retryAt === null && tickTimer !== null) {
      win.clearInterval(tickTimer);
      tickTimer = null;
    }
  }

  conn.addEventListener('open', () => {
    if (state.lastError && state.lastError.code === 'connection') view.clearError();
    refreshKnown();
    view.renderTabs();
    view.renderRoomHeader();
  });

  conn.addEventListener('close', (ev) => {
    const { code, reason, unconfirmed } = ev.detail;
    unconfirmed.forEach((said) => {
      const room = state.rooms.get(said.room);
      const preview = said.text.length > 60 ? said.text.slice(0, 60) + '…' : said.text;
      // The preview is isolated (FSI ... PDI) so that a direction override in it cannot
      // reorder the rest of the sentence.
      view.appendEntry(room, addNotice(room,
        'The connection dropped before the server confirmed “\u2068' + preview +
        '\u2069”. If it does not appear above after reconnecting, send it again.', Date.now()));
    });
    if (code === 1008 || code === 1009 || code === 1011) {
      view.showError('Disconnected: ' + describeClose(code, reason) + ' Reconnecting…', 'connection');
    }
    view.renderTabs();
    view.renderRoomHeader();
  });

  conn.addEventListener('joined', (ev) => {
    const { room, result } = ev.detail;
    if (result.lost) {
      const entry = addNotice(room,
        'Some messages from while you were away could not be recovered' +
        (result.epochChanged ? ' (the server’s history was reset).' : '.'), Date.now());
      view.appendEntry(room, entry);
    }
    if (room.name === state.current) {
      view.renderRoomHeader();
      view.renderMembers();
    }
    view.renderTabs();
  });

  conn.addEventListener('message', (ev) => {
    const { room, msg } = ev.detail;
    const entry = addMessage(room, msg, room.name === state.current);
    view.appendEntry(room, entry);
    if (room.name !== state.current) view.renderTabs();
  });

  conn.addEventListener('presence', (ev) => {
    const { room, msg } = ev.detail;
    view.appendEntry(room, addPresence(room, msg, Date.now()));
    if (room.name === state.current) view.renderMembers();
  });

  conn.addEventListener('presence_batch', (ev) => {
    if (ev.detail.room.name === state.current) view.renderMembers();
  });

  conn.addEventListener('left', (ev) => {
    const { name, own } = ev.detail;
    if (own) return; // our own leave, already applied
    if (state.current === name) {
      const first = state.rooms.keys().next();
      state.current = first.done ? null : first.value;
    }
    view.showError('You are no longer in room ' + name + '.', 'left');
    view.renderAll();
    saveRooms();
  });

  conn.addEventListener('error', (ev) => {
    const { msg, info, room, dropped } = ev.detail;
    const code = typeof msg.code === 'string' ? msg.code : 'error';
    const reason = typeof msg.reason === 'string' && msg.reason ? msg.reason : code.replace(/_/g, ' ');
    let context = '';
    if (info && info.kind === 'join') {
      context = 'Could not join ' + info.room + ': ';
      if (dropped) {
        roomGone(info.room);
        view.setFieldError(el.roomInput, el.roomError, context + reason);
      } else if (room) {
        view.appendEntry(room, addNotice(room, 'Could not rejoin this room: ' + reason + ' (' + code + ')', Date.now()));
        view.renderTabs();
        view.renderRoomHeader();
      }
    } else if (info && info.kind === 'say') {
      context = 'Message not sent: ';
      if (info.room === state.current && el.messageInput.value === '') el.messageInput.value = info.text;
      if (info.room === state.current) view.setFieldError(el.messageInput, el.messageError, context + reason);
    } else if (info && info.kind === 'nick') {
      context = 'Nickname not accepted: ';
      view.setFieldError(el.nickInput, el.nickError, context + reason);
    } else if (info && info.kind === 'leave') {
      context = 'Leaving ' + info.room + ': ';
    }
    view.showError(context + reason + ' [' + code + ']', code);
  });

  /* ---------- the server's rooms ---------- */

  /**
   * Read `GET /api/rooms` and show the rooms not joined yet (renderKnown); again every
   * KNOWN_POLL_MS while the tab is visible. A refusal (private rooms) or an unreachable server
   * leaves the list as it was: DEFAULT_ROOM is offered in any case.
   */
  async function refreshKnown() {
    const known = state.known;
    known.gen += 1;
    const gen = known.gen;
    if (known.timer !== null) win.clearTimeout(known.timer);
    known.timer = null;
    const ctrl = typeof win.AbortController === 'function' ? new win.AbortController() : null;
    const abortTimer = ctrl ? win.setTimeout(() => ctrl.abort(), 5000) : null;
    try {
      const res = await win.fetch(chatBase(win.location) + '/api/rooms', {
        headers: { Accept: 'application/json' }, cache: 'no-store', credentials: 'same-origin',
        signal: ctrl ? ctrl.signal : undefined,
      });
      const body = res.ok ? await res.json() : null;
      if (gen === known.gen && body && Array.isArray(body.rooms)) {
        known.rooms = body.rooms;
        view.renderKnown();
      }
    } catch (e) {
      /* unreachable or not JSON: keep what is shown */
    } finally {
      if (abortTimer !== null) win.clearTimeout(abortTimer);
    }
    if (gen === known.gen && view.doc.visibilityState !== 'hidden') {
      known.timer = win.setTimeout(refreshKnown, KNOWN_POLL_MS);
    }
  }

  /* ---------- sheets (narrow screens): members, connections ---------- */

  /** Open or close the member list; on a narrow screen it is a sheet over the chat. */
  function setMembersOpen(open) {
    if (open && state.api.open) panel.setOpen(false);
    view.showMembers(open);
  }

  /** "Back to the chat": close whichever sheet is open and give the focus back to its toggle. */
  function closeSheet() {
    if (state.membersOpen) {
      setMembersOpen(false);
      if (!el.membersToggle.hidden) el.membersToggle.focus();
    }
    if (state.api.open) {
      panel.setOpen(false);
      el.connToggle.focus();
    }
  }

  return {
    joinRoom, leaveRoom, switchRoom, setNick, sendText, refreshKnown,
    setMembersOpen, closeSheet,
    reconnectNow: () => conn.reconnectNow(),
  };
}
