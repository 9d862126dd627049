/*
 * portshare web chat client. Plain browser JavaScript: no build step, no framework.
 *
 * Theory of operation
 * -------------------
 * The client keeps one WebSocket to `/ws` (subprotocol `portshare.chat.v1`) and a set of
 * rooms the user wants to be in. That set, not the socket, is the source of truth: whenever
 * a socket opens, every room in the set is (re)joined. Each room remembers
 *
 *   epoch   the server's name for the history its offsets belong to (from `joined`);
 *   offset  the highest message offset accepted in that epoch (null: none yet);
 *   floor   the room's last offset when we first joined it (from `joined.offset`).
 *
 * A rejoin sends `since` = max(offset, floor) and `epoch`, so the server replays exactly what
 * was said while we were away. Any message whose offset is <= `offset` (same epoch) is a
 * duplicate and dropped. `recovered: false` (or a changed epoch) on a rejoin adds a visible
 * notice to the room. When the socket closes, reconnection is scheduled with exponential
 * backoff plus jitter; the attempt counter resets once a connection has opened (unless it
 * dies again within a second, which counts as a failed attempt, so a flapping server is not
 * hammered).
 *
 * Fallback: when no WebSocket can be opened (no `WebSocket` in the browser, or
 * WS_FALLBACK_AFTER attempts in a row that never opened, e.g. a proxy that refuses the
 * Upgrade), the client switches to an SseSocket: the same interface over Server-Sent Events
 * (`GET /sse`, one EventSource for all joined rooms, resumed by event id) for what it reads
 * and the HTTP publish API (`POST /api/rooms/R/messages`) for what it says. `#conn-transport`
 * shows which transport is in use.
 *
 * What the person is told: `#conn-state` is one short line ("Online", "Reconnecting in 3 s
 * (attempt 2)"); `#conn-detail` says why, in words, from the close of the last connection that
 * was open (the server's own reason when it gave one, e.g. "Server shutting down."). Attempts
 * that fail afterwards (the server is still down) do not replace that reason with a bare
 * "connection lost". Close codes appear only in tooltips.
 *
 * Rooms on this server: `GET /api/rooms` is read each time a connection opens (the first one
 * included), after leaving a room, when the tab becomes visible again and every KNOWN_POLL_MS
 * while it is visible. The rooms not joined yet are listed to join with one click, with
 * DEFAULT_ROOM ("lobby") always among them.
 *
 * Narrow screens (below 900 CSS pixels, a phone): the page itself never scrolls; the message
 * list does, between a compact header and the composer. The members and connections panes are
 * sheets over the chat, one at a time, opened from their buttons and closed with "Back to the
 * chat" or Escape.
 *
 * Section 1 holds the pure logic (no DOM, no timers, no I/O) and is also loadable by Node
 * for tests (`require('./app.js')` returns it). Section 2 is the browser UI. The only global
 * is `window.portshare`, which exposes the state and the logic for debugging and tests.
 *
 * Security: every string that came from a user or the server is put into the page with
 * textContent / createTextNode only, never as HTML.
 */
(function (root) {
  'use strict';

  /* =====================================================================================
   * 1. Pure logic
   * ===================================================================================== */

  const VERSION = '1';
  const SUBPROTOCOL = 'portshare.chat.v1';
  const LIMITS = Object.freeze({ roomMax: 64, nickMax: 32, textMax: 4096, logMax: 1000 });
  const BACKOFF = Object.freeze({ baseMs: 500, maxMs: 15000, jitter: 0.5, stableMs: 1000 });
  const ROOM_RE = /^[A-Za-z0-9._-]+$/;
  // "Printable" as Python's str.isprintable(): no control/format/unassigned/private-use
  // characters (\p{C}) and no separators (\p{Z}) other than the ASCII space.
  const UNPRINTABLE_RE = /[\p{C}\p{Z}]/u;
  // Invisible characters that can disguise a message: the explicit bidi embeddings, overrides
  // and isolates (U+202A-U+202E, U+2066-U+2069: "gnp.exe" shown as "exe.png") and the
  // zero-width space, word joiner and BOM. Joiners (U+200C/U+200D, needed by emoji and many
  // scripts) and the LRM/RLM marks are harmless and left alone.
  const HIDDEN_CHARS = Object.freeze({
    0x200B: 'ZERO WIDTH SPACE',
    0x202A: 'LEFT-TO-RIGHT EMBEDDING',
    0x202B: 'RIGHT-TO-LEFT EMBEDDING',
    0x202C: 'POP DIRECTIONAL FORMATTING',
    0x202D: 'LEFT-TO-RIGHT OVERRIDE',
    0x202E: 'RIGHT-TO-LEFT OVERRIDE',
    0x2060: 'WORD JOINER',
    0x2066: 'LEFT-TO-RIGHT ISOLATE',
    0x2067: 'RIGHT-TO-LEFT ISOLATE',
    0x2068: 'FIRST STRONG ISOLATE',
    0x2069: 'POP DIRECTIONAL ISOLATE',
    0xFEFF: 'ZERO WIDTH NO-BREAK SPACE',
  });
  const HIDDEN_RE = /[\u200B\u202A-\u202E\u2060\u2066-\u2069\uFEFF]/g;

  /**
   * Split a text into pieces at the characters of HIDDEN_CHARS, so that each can be shown
   * (and neutralised) on its own.
   * @return {Array<{text: string, hidden: string|null}>} `hidden` is "U+202E" for such a
   *   character, null for ordinary text; the pieces' texts joined are the input.
   */
  function splitHidden(text) {
    const pieces = [];
    let last = 0;
    HIDDEN_RE.lastIndex = 0;
    for (let m = HIDDEN_RE.exec(text); m !== null; m = HIDDEN_RE.exec(text)) {
      if (m.index > last) pieces.push({ text: text.slice(last, m.index), hidden: null });
      const cp = m[0].charCodeAt(0).toString(16).toUpperCase().padStart(4, '0');
      pieces.push({ text: m[0], hidden: 'U+' + cp });
      last = m.index + 1;
    }
    if (last < text.length) pieces.push({ text: text.slice(last), hidden: null });
    return pieces;
  }

  /** Length in Unicode code points (what the server counts), not UTF-16 units. */
  function codePointLength(s) {
    let n = 0;
    for (const _ of s) n += 1; // eslint-disable-line no-unused-vars
    return n;
  }

  /** @return {string|null} a message for the user, or null when the room name is valid. */
  function validateRoom(name) {
    if (typeof name !== 'string' || name.length === 0) return 'Enter a room name.';
    if (name.length > LIMITS.roomMax) {
      return 'A room name is at most ' + LIMITS.roomMax + ' characters (this one has ' + name.length + ').';
    }
    if (!ROOM_RE.test(name)) {
      return 'A room name may only contain letters A–Z and a–z, digits 0–9, “.”, “_” and “-” (no spaces).';
    }
    return null;
  }

  /** @return {string|null} a message for the user, or null when the nickname is valid. */
  function validateNick(nick) {
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
  function validateText(text, max) {
    const limit = max || LIMITS.textMax;
    if (typeof text !== 'string' || text.trim().length === 0) return 'Type a message first.';
    const n = codePointLength(text);
    if (n > limit) return 'A message is at most ' + limit + ' characters (this one has ' + n + ').';
    return null;
  }

  /**
   * Delay before reconnect attempt number `attempt` (0-based): 0.5 s doubling up to 15 s,
   * with "equal jitter" (a random value between half of and all of that ceiling).
   * @param {number} attempt consecutive failed attempts so far
   * @param {number} [random] a number in [0, 1); Math.random() when omitted
   */
  function backoffDelay(attempt, random) {
    const r = typeof random === 'number' ? random : Math.random();
    const n = Math.max(0, Math.min(30, attempt | 0));
    const ceiling = Math.min(BACKOFF.maxMs, BACKOFF.baseMs * Math.pow(2, n));
    return Math.round(ceiling * (1 - BACKOFF.jitter * r));
  }

  /**
   * The attempt counter after a socket closed.
   * @param {number} attempt the counter now (0 if the socket had opened)
   * @param {number} attemptAtOpen the counter just before the socket opened
   * @param {number|null} openForMs how long the socket was open (null: it never opened)
   * @param {number} code the WebSocket close code
   */
  function attemptAfterClose(attempt, attemptAtOpen, openForMs, code) {
    let next = attempt;
    if (openForMs !== null && openForMs < BACKOFF.stableMs) next = Math.max(attempt, attemptAtOpen);
    if (code === 1013) next = Math.max(next, 2); // "try again later": start at 2 s or more
    return next;
  }

  const CLOSE_WORDS = Object.freeze({
    1000: 'The connection was closed.',
    1001: 'The server is going away (restarting, perhaps).',
    1006: 'The connection was lost.',
    1008: 'The server refused this connection.',
    1009: 'A message was too big for the server.',
    1011: 'The server ran into an error.',
    1012: 'The server is restarting.',
    1013: 'The server is busy.',
    1015: 'A secure (TLS) connection could not be set up.',
    4000: 'The server disconnected you.',
    4001: 'Your sign-in expired.',
  });

  /**
   * Why a WebSocket closed, as a sentence for a person: the server's own reason when it gave
   * one ("Server shutting down."), else the meaning of the code. The number itself is left out
   * (it means nothing to most people; put it in a tooltip).
   * @param {number} code the close code (1006: closed without a close frame; 0: never made)
   * @param {string} [reason] the close reason: the server's words, except for 1006 and 0,
   *   where the browser or this client wrote it
   */
  function describeClose(code, reason) {
    const said = typeof reason === 'string' ? reason.trim() : '';
    if (!said) return CLOSE_WORDS[code] || 'The connection was closed.';
    if (!code || code === 1006) return 'The connection was lost (' + said.replace(/[.!?]+$/, '') + ').';
    return said.charAt(0).toUpperCase() + said.slice(1) + (/[.!?]$/.test(said) ? '' : '.');
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
  function knownRooms(listed, joined, preferred, max) {
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

  /** Fresh per-room state. */
  function createRoom(name) {
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
  function sinceFor(room) {
    if (!room.joinedOnce) return null;
    const a = Number.isInteger(room.offset) ? room.offset : null;
    const b = Number.isInteger(room.floor) ? room.floor : null;
    if (a === null) return b;
    if (b === null) return a;
    return Math.max(a, b);
  }

  /** The join command for a room: a rejoin carries `since` and `epoch`. */
  function joinCommand(room, nick) {
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
  function applyJoined(room, msg, request) {
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
  function pushLog(room, entry) {
    room.log.push(entry);
    let removed = 0;
    while (room.log.length > LIMITS.logMax) {
      room.log.shift();
      removed += 1;
    }
    return removed;
  }

  /**
   * Accept a `message` event unless it is a duplicate.
   * @param {boolean} isCurrent whether the room is the one on screen (no unread count then)
   * @return {object|null} the new log entry, or null for a duplicate
   */
  function acceptMessage(room, msg, isCurrent) {
    const hasOffset = Number.isInteger(msg.offset);
    if (msg.epoch !== undefined && msg.epoch !== null && msg.epoch !== room.epoch) {
      if (room.epoch !== null) room.offset = null; // a new history: old offsets mean nothing
      room.epoch = msg.epoch;
    }
    if (hasOffset && room.offset !== null && msg.offset <= room.offset) return null;
    if (hasOffset) room.offset = msg.offset;
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

  /** Apply a `presence` event to the member list. @return the log entry */
  function applyPresence(room, msg, now) {
    const nick = typeof msg.nick === 'string' ? msg.nick : '';
    if (msg.event === 'join') {
      if (room.members.indexOf(nick) === -1) room.members.push(nick);
      room.count = Math.max(room.count + 1, room.members.length);
    } else if (msg.event === 'leave') {
      const i = room.members.indexOf(nick);
      if (i !== -1) room.members.splice(i, 1);
      room.count = Math.max(room.count - 1, room.members.length);
    }
    const entry = { kind: 'presence', event: msg.event === 'leave' ? 'leave' : 'join', nick: nick, ts: now };
    entry.removed = pushLog(room, entry);
    return entry;
  }

  /**
   * Apply a `presence_batch` event (a big room's joins and leaves over an interval, net) to
   * the member list and count. It adds no log entry: in a big room, a line per join would
   * bury the conversation.
   */
  function applyPresenceBatch(room, msg) {
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
  function addNotice(room, text, now) {
    const entry = { kind: 'notice', text: text, ts: now };
    entry.removed = pushLog(room, entry);
    return entry;
  }

  function markRead(room) {
    room.unread = 0;
  }

  function totalUnread(rooms) {
    let n = 0;
    rooms.forEach((r) => { n += r.unread; });
    return n;
  }

  /** Members for display: sorted case-insensitively, duplicates kept. */
  function sortedMembers(room) {
    return room.members.slice().sort((a, b) => a.localeCompare(b, undefined, { sensitivity: 'base' }) || (a < b ? -1 : a > b ? 1 : 0));
  }

  /** A small stable hash of a nick to pick one of `n` colour classes. */
  function nickColour(nick, n) {
    let h = 0;
    for (let i = 0; i < nick.length; i += 1) h = (h * 31 + nick.charCodeAt(i)) | 0;
    return Math.abs(h) % n;
  }

  function formatBytes(n) {
    if (!Number.isFinite(n)) return '–';
    if (n < 1024) return n + ' B';
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
    if (n < 1024 * 1024 * 1024) return (n / 1024 / 1024).toFixed(1) + ' MiB';
    return (n / 1024 / 1024 / 1024).toFixed(2) + ' GiB';
  }

  function formatAge(seconds) {
    if (!Number.isFinite(seconds) || seconds < 0) return '–';
    if (seconds < 10) return seconds.toFixed(1) + ' s';
    const s = Math.floor(seconds);
    if (s < 60) return s + ' s';
    const m = Math.floor(s / 60);
    if (m < 60) return m + ' min ' + String(s % 60).padStart(2, '0') + ' s';
    const h = Math.floor(m / 60);
    return h + ' h ' + String(m % 60).padStart(2, '0') + ' min';
  }

  /** "HTTP/1.1 keep-alive" or "WebSocket /ws (portshare.chat.v1)". */
  function describeProtocol(c) {
    const p = String(c.protocol || '').toLowerCase();
    if (p === 'websocket') {
      let s = 'WebSocket';
      if (c.path) s += ' ' + c.path;
      if (c.subprotocol) s += ' (' + c.subprotocol + ')';
      return s;
    }
    if (p === 'http/1.1') return 'HTTP/1.1 keep-alive';
    if (p === 'http/1.0') return 'HTTP/1.0';
    if (p === 'h2' || p === 'http/2') return 'HTTP/2';
    return c.protocol ? String(c.protocol) : 'unknown';
  }

  function peerOf(c) {
    if (typeof c.peer === 'string' && c.peer) return c.peer;
    if (c.host !== undefined && c.port !== undefined) {
      return String(c.host).indexOf(':') !== -1 ? '[' + c.host + ']:' + c.port : c.host + ':' + c.port;
    }
    return '?';
  }

  const logic = Object.freeze({
    VERSION, SUBPROTOCOL, LIMITS, BACKOFF,
    codePointLength, validateRoom, validateNick, validateText,
    backoffDelay, attemptAfterClose, describeClose, knownRooms,
    createRoom, sinceFor, joinCommand, applyJoined, acceptMessage, applyPresence, applyPresenceBatch,
    addNotice, pushLog, markRead, totalUnread, sortedMembers, nickColour,
    formatBytes, formatAge, describeProtocol, peerOf, splitHidden, HIDDEN_CHARS,
  });

  if (typeof module === 'object' && module && module.exports) module.exports = logic;
  if (!root || !root.document) return; // Node: logic only.

  /* =====================================================================================
   * 2. Browser UI
   * ===================================================================================== */

  const win = root;
  const doc = win.document;
  const NICK_KEY = 'portshare.nick';
  const ROOMS_KEY = 'portshare.rooms';
  const TOKEN_KEY = 'portshare.apiToken';
  const CONNECT_TIMEOUT_MS = 10000;
  // WebSocket attempts that never opened, in a row, before falling back to SSE + HTTP
  const WS_FALLBACK_AFTER = 2;
  const POLL_MS = 2000;
  const NICK_COLOURS = 8;
  const DEFAULT_ROOM = 'lobby';
  const KNOWN_MAX = 20; // rooms of the server offered at most
  const KNOWN_POLL_MS = 60000;
  // below this width the layout is one column and the side panes are sheets (see style.css)
  const NARROW = '(max-width: 899.98px)';

  /* ---------- storage (may be unavailable: private mode, disabled cookies) ---------- */

  function storageGet(kind, key) {
    try { return win[kind].getItem(key); } catch (e) { return null; }
  }
  function storageSet(kind, key, value) {
    try {
      if (value === null) win[kind].removeItem(key);
      else win[kind].setItem(key, value);
    } catch (e) { /* ignore */ }
  }

  /* ---------- state ---------- */

  const state = {
    nick: '',
    rooms: new Map(), // name -> room state (see createRoom), in tab order
    current: null,
    conn: {
      ws: null,
      status: 'connecting', // 'connecting' | 'online' | 'reconnecting'
      attempt: 0,
      attemptAtOpen: 0,
      openedAt: null,
      everOpened: false,
      retryAt: null,
      retryTimer: null,
      tickTimer: null,
      connectTimer: null,
      lastClose: null, // {code, reason} of the last connection that was open; null once online
      failedSince: 0, // attempts since then that never opened
      transport: 'websocket', // 'websocket' | 'sse' (the fallback)
      wsOpened: false, // whether a WebSocket ever opened (then failures are not a proxy's)
    },
    refs: new Map(), // ref -> {kind: 'join'|'say'|'leave'|'nick', room?, text?, nick?}
    nextRef: 1,
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

  /* ---------- DOM ---------- */

  function $(id) { return doc.getElementById(id); }
  const el = {
    nickForm: $('nick-form'), nickInput: $('nick-input'), nickError: $('nick-error'),
    topbar: doc.querySelector('.topbar'), connDetail: $('conn-detail'),
    connState: $('conn-state'), connAnnounce: $('conn-announce'), connTransport: $('conn-transport'), reconnect: $('reconnect-button'),
    connToggle: $('connections-toggle'), layout: $('layout'),
    banner: $('error-banner'), bannerText: $('error-text'), bannerDismiss: $('error-dismiss'),
    joinForm: $('join-form'), roomInput: $('room-input'), roomError: $('room-error'),
    tabs: $('room-tabs'), roomsEmpty: $('rooms-empty'), roomLists: doc.querySelector('.room-lists'),
    known: $('known-rooms'),
    membersToggle: $('members-toggle'), membersToggleCount: $('members-toggle-count'), sheetClose: $('sheet-close'),
    roomTitle: $('room-title'), roomStatus: $('room-status'),
    messages: $('messages'), emptyHint: $('empty-hint'),
    messageForm: $('message-form'), messageInput: $('message-input'), messageError: $('message-error'),
    members: $('members'), memberCount: $('member-count'),
    panel: $('connections-panel'), listening: $('connections-listening'),
    tokenForm: $('api-token-form'), tokenInput: $('api-token-input'), tokenClear: $('api-token-clear'),
    apiStatus: $('connections-status'), table: $('connections-table'),
  };

  function h(tag, className, text) {
    const node = doc.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function setFieldError(input, errorEl, message) {
    errorEl.textContent = message || '';
    errorEl.hidden = !message;
    if (message) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }

  function showError(text, code) {
    state.lastError = { code: code || null, text: text, at: Date.now() };
    el.bannerText.textContent = text;
    if (code) el.banner.setAttribute('data-code', code);
    else el.banner.removeAttribute('data-code');
    el.banner.hidden = false;
  }

  function clearError() {
    el.banner.hidden = true;
    el.bannerText.textContent = '';
    el.banner.removeAttribute('data-code');
  }

  function formatClock(ts) {
    const d = new Date(ts);
    return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
  }

  /* ---------- rendering: log ---------- */

  function renderEntry(entry) {
    let li;
    if (entry.kind === 'message') {
      li = h('li', 'message');
      if (entry.offset !== null) li.setAttribute('data-offset', String(entry.offset));
      if (entry.nick === state.nick) li.classList.add('own');
      li.appendChild(timeNode(entry.ts));
      const nick = h('span', 'nick nick-c' + nickColour(entry.nick, NICK_COLOURS), entry.nick);
      nick.setAttribute('dir', 'auto');
      nick.title = entry.nick; // a long nick is cut short with an ellipsis
      li.appendChild(nick);
      const text = h('span', 'text');
      text.setAttribute('dir', 'auto');
      appendText(text, entry.text);
      li.appendChild(text);
    } else if (entry.kind === 'presence') {
      li = h('li', 'presence presence-' + entry.event);
      li.appendChild(timeNode(entry.ts));
      const body = h('span', 'presence-text');
      const nick = h('span', 'nick', entry.nick);
      nick.setAttribute('dir', 'auto');
      body.appendChild(nick);
      body.appendChild(doc.createTextNode(entry.event === 'join' ? ' joined' : ' left'));
      li.appendChild(body);
    } else {
      li = h('li', 'notice');
      li.appendChild(timeNode(entry.ts));
      li.appendChild(h('span', 'notice-text', entry.text));
    }
    return li;
  }

  /**
   * Put a user's text into `node` as text nodes. Each hidden character (see splitHidden)
   * stays in the text but gets an isolated span of its own, which confines its effect to
   * itself and shows it as a small "U+202E" mark (CSS generated content, so copying the
   * message still gives the text as it was sent).
   */
  function appendText(node, text) {
    splitHidden(text).forEach((piece) => {
      if (piece.hidden === null) {
        node.appendChild(doc.createTextNode(piece.text));
        return;
      }
      const mark = h('span', 'hidden-char', piece.text);
      mark.setAttribute('data-cp', piece.hidden);
      const name = HIDDEN_CHARS[piece.text.charCodeAt(0)];
      mark.title = piece.hidden + ' ' + name + ' (an invisible character in this message)';
      node.appendChild(mark);
    });
  }

  function timeNode(ts) {
    const t = h('time', 'time');
    if (typeof ts === 'number' && Number.isFinite(ts)) {
      const d = new Date(ts);
      t.textContent = formatClock(ts);
      t.setAttribute('datetime', d.toISOString());
      t.title = d.toLocaleString();
    }
    return t;
  }

  function nearBottom() {
    const m = el.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 48;
  }

  function scrollToBottom() {
    el.messages.scrollTop = el.messages.scrollHeight;
  }

  // Whether the list was scrolled to its end when last looked at: it stays there when the
  // list gets shorter (a phone's keyboard opening, the reconnecting notice in the header).
  let stuckToBottom = true;

  function renderLog() {
    const room = currentRoom();
    el.messages.setAttribute('aria-busy', 'true');
    el.messages.textContent = '';
    if (room) {
      const frag = doc.createDocumentFragment();
      room.log.forEach((e) => frag.appendChild(renderEntry(e)));
      el.messages.appendChild(frag);
    }
    el.messages.setAttribute('aria-busy', 'false');
    scrollToBottom();
  }

  /** Append one new entry if it belongs to the room on screen. */
  function appendEntry(room, entry) {
    if (!room || room.name !== state.current) return;
    const stick = nearBottom();
    for (let i = 0; i < (entry.removed || 0) && el.messages.firstChild; i += 1) {
      el.messages.removeChild(el.messages.firstChild);
    }
    el.messages.appendChild(renderEntry(entry));
    if (stick || (entry.kind === 'message' && entry.nick === state.nick)) scrollToBottom();
  }

  /* ---------- rendering: tabs, members, header ---------- */

  const STATUS_TEXT = {
    offline: 'waiting for connection',
    joining: 'joining…',
    joined: '',
    failed: 'could not join',
  };

  function renderTabs() {
    const existing = new Map();
    const wanted = [];
    Array.prototype.forEach.call(el.tabs.children, (li) => existing.set(li.getAttribute('data-key'), li));
    state.rooms.forEach((room, name) => {
      let li = existing.get(name);
      if (!li) {
        li = h('li', 'room-tab');
        li.setAttribute('data-key', name);
        const tab = h('button', 'tab');
        tab.type = 'button';
        tab.setAttribute('data-room', name);
        tab.appendChild(h('span', 'tab-name', name));
        tab.appendChild(h('span', 'unread'));
        const leave = h('button', 'leave small', '×');
        leave.type = 'button';
        leave.setAttribute('data-leave', name);
        leave.setAttribute('aria-label', 'Leave room ' + name);
        leave.title = 'Leave ' + name;
        li.appendChild(tab);
        li.appendChild(leave);
      }
      existing.delete(name);
      const tab = li.firstChild;
      const unread = tab.querySelector('.unread');
      unread.textContent = String(room.unread);
      unread.hidden = room.unread === 0;
      const label = name + (room.unread ? ', ' + room.unread + ' unread' : '') +
        (STATUS_TEXT[room.status] ? ', ' + STATUS_TEXT[room.status] : '');
      tab.setAttribute('aria-label', label);
      tab.title = STATUS_TEXT[room.status] ? name + ' (' + STATUS_TEXT[room.status] + ')' : name;
      if (name === state.current) tab.setAttribute('aria-current', 'true');
      else tab.removeAttribute('aria-current');
      li.classList.toggle('is-current', name === state.current);
      li.setAttribute('data-status', room.status);
      wanted.push(li);
    });
    existing.forEach((li) => li.remove());
    // Put the tabs in state order, moving only misplaced ones (moving a node blurs it).
    let cursor = el.tabs.firstElementChild;
    wanted.forEach((li) => {
      if (li === cursor) cursor = cursor.nextElementSibling;
      else el.tabs.insertBefore(li, cursor);
    });
    el.roomsEmpty.hidden = state.rooms.size > 0;
    renderKnown();
    const total = totalUnread(state.rooms);
    doc.title = (total ? '(' + total + ') ' : '') + (state.current ? '#' + state.current + ' – ' : '') + 'portshare';
  }

  /** The server's rooms not joined yet, each a button that joins it (see knownRooms). */
  function renderKnown() {
    const rows = knownRooms(state.known.rooms, state.rooms, DEFAULT_ROOM, KNOWN_MAX);
    const shown = JSON.stringify(rows);
    if (shown === state.known.shown) return;
    state.known.shown = shown;
    const existing = new Map();
    Array.prototype.forEach.call(el.known.children, (li) => existing.set(li.getAttribute('data-key'), li));
    const wanted = rows.map((r) => {
      let li = existing.get(r.room);
      if (!li) {
        li = h('li', 'known-room');
        li.setAttribute('data-key', r.room);
        const button = h('button', 'join-chip');
        button.type = 'button';
        button.setAttribute('data-join', r.room);
        button.appendChild(h('span', 'tab-name', r.room));
        button.appendChild(h('span', 'here'));
        li.appendChild(button);
      }
      existing.delete(r.room);
      const button = li.firstChild;
      const people = r.members === 1 ? '1 person here' : r.members + ' people here';
      const said = r.offset === 1 ? '1 message so far' : r.offset + ' messages so far';
      button.querySelector('.here').textContent = r.members ? r.members + ' here' : '';
      button.setAttribute('aria-label', 'Join ' + r.room + (r.members ? ', ' + people : ''));
      button.title = 'Join #' + r.room + ' (' + (r.members ? people : 'nobody here yet') +
        (r.offset ? ', ' + said : '') + ')';
      return li;
    });
    existing.forEach((li) => li.remove());
    let cursor = el.known.firstElementChild;
    wanted.forEach((li) => {
      if (li === cursor) cursor = cursor.nextElementSibling;
      else el.known.insertBefore(li, cursor);
    });
  }

  /** Scroll the row of room chips (narrow screens) so that this room's tab is in it. */
  function revealTab(name) {
    const box = el.roomLists;
    if (!box || box.scrollWidth <= box.clientWidth) return;
    const li = el.tabs.querySelector('li[data-key="' + (win.CSS && win.CSS.escape ? win.CSS.escape(name) : name) + '"]');
    if (!li) return;
    const outer = box.getBoundingClientRect();
    const inner = li.getBoundingClientRect();
    if (inner.left < outer.left) box.scrollLeft -= outer.left - inner.left + 8;
    else if (inner.right > outer.right) box.scrollLeft += inner.right - outer.right + 8;
  }

  function renderMembers() {
    const room = currentRoom();
    el.members.textContent = '';
    el.membersToggle.hidden = !room;
    el.membersToggleCount.textContent = room ? '(' + room.count + ')' : '';
    if (!room) {
      el.memberCount.textContent = '';
      if (state.membersOpen) setMembersOpen(false);
      return;
    }
    const frag = doc.createDocumentFragment();
    sortedMembers(room).forEach((nick) => {
      const li = h('li', 'member nick-c' + nickColour(nick, NICK_COLOURS), nick);
      li.setAttribute('dir', 'auto');
      li.title = nick; // a long nick is cut short with an ellipsis
      if (nick === state.nick) {
        li.classList.add('self');
        li.title = nick + ' (you)';
      }
      frag.appendChild(li);
    });
    el.members.appendChild(frag);
    const shown = room.members.length;
    el.memberCount.textContent = room.count > shown
      ? '(' + shown + ' shown of ' + room.count + ')'
      : '(' + shown + ')';
  }

  function renderRoomHeader() {
    const room = currentRoom();
    el.roomTitle.textContent = room ? '#' + room.name : 'No room selected';
    el.roomStatus.textContent = room ? STATUS_TEXT[room.status] || '' : '';
    el.emptyHint.hidden = !!room;
    el.messageInput.placeholder = room ? 'Message #' + room.name : 'Join a room first';
  }

  let lastAnnounced = null;

  function renderConnState() {
    const c = state.conn;
    el.connState.setAttribute('data-state', c.status);
    let text;
    if (c.status === 'online') {
      text = 'Online';
    } else if (c.status === 'connecting') {
      text = 'Connecting…';
    } else {
      const left = c.retryAt !== null ? c.retryAt - Date.now() : 0;
      text = left > 0
        ? 'Reconnecting in ' + Math.ceil(left / 1000) + ' s (attempt ' + c.attempt + ')'
        : 'Reconnecting… (attempt ' + c.attempt + ')';
    }
    if (el.connState.textContent !== text) el.connState.textContent = text;
    // why, in words: from the last connection that was open (see socketClosed)
    let detail = '';
    let tip = '';
    if (c.status === 'reconnecting') {
      if (c.lastClose) {
        detail = describeClose(c.lastClose.code, c.lastClose.reason);
        tip = c.lastClose.code ? 'WebSocket close code ' + c.lastClose.code : '';
      } else {
        detail = 'The server cannot be reached.';
      }
      if (c.failedSince > 0) {
        tip += (tip ? '; ' : '') + c.failedSince + (c.failedSince === 1 ? ' attempt' : ' attempts') +
          ' since then could not connect';
      }
    }
    if (el.connDetail.textContent !== detail) el.connDetail.textContent = detail;
    el.connDetail.hidden = !detail;
    el.connDetail.title = tip;
    el.connState.title = detail ? detail + (tip ? ' (' + tip + ')' : '') : '';
    el.topbar.setAttribute('data-conn', c.status);
    if (c.status !== lastAnnounced) {
      // Announce state changes once (the countdown itself would be chatty).
      lastAnnounced = c.status;
      el.connAnnounce.textContent = c.status === 'online' ? 'Connected.'
        : c.status === 'connecting' ? 'Connecting.'
          : (detail ? detail + ' Reconnecting.' : 'Connection lost, reconnecting.');
    }
    el.connState.setAttribute('data-attempt', String(c.attempt));
    if (el.connTransport) {
      el.connTransport.setAttribute('data-transport', c.transport);
      el.connTransport.textContent = c.transport === 'sse' ? 'via SSE + HTTP' : 'via WebSocket';
      el.connTransport.title = c.transport === 'sse'
        ? 'No WebSocket could be opened: reading with Server-Sent Events (/sse), sending with HTTP POST'
        : 'One WebSocket to /ws';
    }
    el.reconnect.hidden = c.status !== 'reconnecting' || c.retryTimer === null;
  }

  function renderAll() {
    renderTabs();
    renderRoomHeader();
    renderLog();
    renderMembers();
    renderConnState();
  }

  /* ---------- rooms ---------- */

  function currentRoom() {
    return state.current !== null ? state.rooms.get(state.current) || null : null;
  }

  function saveRooms() {
    storageSet('sessionStorage', ROOMS_KEY, JSON.stringify({
      rooms: Array.from(state.rooms.keys()),
      current: state.current,
    }));
  }

  function allocRef(info) {
    const ref = state.nextRef;
    state.nextRef += 1;
    state.refs.set(ref, info);
    return ref;
  }

  function takeRef(ref) {
    if (ref === undefined || ref === null) return null;
    let key = ref;
    if (!state.refs.has(key) && typeof ref === 'string' && /^\d+$/.test(ref)) key = Number(ref);
    const info = state.refs.get(key) || null;
    state.refs.delete(key);
    return info;
  }

  function isOnline() {
    const ws = state.conn.ws;
    return state.conn.status === 'online' && ws !== null && ws.readyState === 1;
  }

  function send(obj) {
    if (!isOnline()) return false;
    try {
      state.conn.ws.send(JSON.stringify(obj));
      return true;
    } catch (e) {
      return false;
    }
  }

  function sendJoin(room) {
    const cmd = joinCommand(room, state.nick);
    cmd.ref = allocRef({ kind: 'join', room: room.name });
    room.pendingJoin = cmd;
    room.status = 'joining';
    if (!send(cmd)) {
      room.status = 'offline';
      room.pendingJoin = null;
      takeRef(cmd.ref);
    }
  }

  function joinRoom(name) {
    const problem = validateRoom(name);
    if (problem) {
      setFieldError(el.roomInput, el.roomError, problem);
      return false;
    }
    setFieldError(el.roomInput, el.roomError, null);
    let room = state.rooms.get(name);
    if (!room) {
      room = createRoom(name);
      room.status = 'offline';
      state.rooms.set(name, room);
    }
    if (room.status !== 'joined' && room.status !== 'joining' && isOnline()) sendJoin(room);
    switchRoom(name);
    saveRooms();
    return true;
  }

  function leaveRoom(name) {
    const room = state.rooms.get(name);
    if (!room) return;
    if (isOnline() && room.status !== 'failed') {
      send({ type: 'leave', room: name, ref: allocRef({ kind: 'leave', room: name }) });
    }
    const names = Array.from(state.rooms.keys());
    const idx = names.indexOf(name);
    state.rooms.delete(name);
    if (state.current === name) {
      const rest = names.filter((n) => n !== name);
      state.current = rest.length ? rest[Math.min(idx, rest.length - 1)] : null;
      const now = currentRoom();
      if (now) markRead(now);
      renderAll();
    } else {
      renderTabs();
    }
    saveRooms();
    refreshKnown();
  }

  function switchRoom(name) {
    if (!state.rooms.has(name)) return;
    state.current = name;
    markRead(state.rooms.get(name));
    setFieldError(el.messageInput, el.messageError, null);
    renderAll();
    revealTab(name);
    saveRooms();
  }

  function setNick(value) {
    const nick = value.trim();
    const problem = validateNick(nick);
    if (problem) {
      setFieldError(el.nickInput, el.nickError, problem);
      return false;
    }
    setFieldError(el.nickInput, el.nickError, null);
    el.nickInput.value = nick;
    if (nick === state.nick) return true;
    state.nick = nick;
    storageSet('localStorage', NICK_KEY, nick);
    // `nick` has no reply unless it fails: keep only the latest ref so they do not pile up.
    state.refs.forEach((info, ref) => { if (info.kind === 'nick') state.refs.delete(ref); });
    if (isOnline()) send({ type: 'nick', nick: nick, ref: allocRef({ kind: 'nick', nick: nick }) });
    renderMembers();
    return true;
  }

  function sendText() {
    const room = currentRoom();
    const text = el.messageInput.value;
    const fail = (msg) => { setFieldError(el.messageInput, el.messageError, msg); return false; };
    if (!room) return fail('Join a room first.');
    const problem = validateText(text, LIMITS.textMax);
    if (problem) return fail(problem);
    if (!isOnline()) return fail('Not connected – your message was not sent (it is still in the box).');
    if (room.status !== 'joined') return fail('Still joining #' + room.name + ' – try again in a moment.');
    const ref = allocRef({ kind: 'say', room: room.name, text: text });
    if (!send({ type: 'say', room: room.name, text: text, ref: ref })) {
      takeRef(ref);
      return fail('Could not send – the connection is closing.');
    }
    el.messageInput.value = '';
    setFieldError(el.messageInput, el.messageError, null);
    return true;
  }

  /* ---------- server events ---------- */

  function onJoined(msg, info) {
    const room = state.rooms.get(msg.room);
    if (!room) return; // left before the reply arrived
    const result = applyJoined(room, msg, room.pendingJoin || (info && info.request) || null);
    if (result.lost) {
      const entry = addNotice(room,
        'Some messages from while you were away could not be recovered' +
        (result.epochChanged ? ' (the server’s history was reset).' : '.'), Date.now());
      appendEntry(room, entry);
    }
    if (room.name === state.current) {
      renderRoomHeader();
      renderMembers();
    }
    renderTabs();
  }

  function onMessage(msg) {
    const room = state.rooms.get(msg.room);
    if (!room) return;
    const entry = acceptMessage(room, msg, room.name === state.current);
    if (!entry) return;
    appendEntry(room, entry);
    if (room.name !== state.current) renderTabs();
  }

  function onPresence(msg) {
    const room = state.rooms.get(msg.room);
    if (!room) return;
    const entry = applyPresence(room, msg, Date.now());
    appendEntry(room, entry);
    if (room.name === state.current) renderMembers();
  }

  function onPresenceBatch(msg) {
    const room = state.rooms.get(msg.room);
    if (!room) return;
    applyPresenceBatch(room, msg);
    if (room.name === state.current) renderMembers();
  }

  function onLeft(msg, info) {
    if (info && info.kind === 'leave') return; // our own leave, already applied
    const room = state.rooms.get(msg.room);
    if (!room) return;
    state.rooms.delete(msg.room);
    if (state.current === msg.room) {
      const first = state.rooms.keys().next();
      state.current = first.done ? null : first.value;
    }
    showError('You are no longer in room ' + msg.room + '.', 'left');
    renderAll();
    saveRooms();
  }

  function onServerError(msg, info) {
    const code = typeof msg.code === 'string' ? msg.code : 'error';
    const reason = typeof msg.reason === 'string' && msg.reason ? msg.reason : code.replace(/_/g, ' ');
    let context = '';
    if (info && info.kind === 'join') {
      const room = state.rooms.get(info.room);
      context = 'Could not join ' + info.room + ': ';
      if (room && !room.joinedOnce) {
        leaveRoomLocally(info.room);
        setFieldError(el.roomInput, el.roomError, context + reason);
      } else if (room) {
        room.status = 'failed';
        room.pendingJoin = null;
        appendEntry(room, addNotice(room, 'Could not rejoin this room: ' + reason + ' (' + code + ')', Date.now()));
        renderTabs();
        renderRoomHeader();
      }
    } else if (info && info.kind === 'say') {
      context = 'Message not sent: ';
      const room = state.rooms.get(info.room);
      if (info.room === state.current && el.messageInput.value === '') el.messageInput.value = info.text;
      if (info.room === state.current) setFieldError(el.messageInput, el.messageError, context + reason);
      if (code === 'not_joined' && room && isOnline()) sendJoin(room); // server forgot us: rejoin
    } else if (info && info.kind === 'nick') {
      context = 'Nickname not accepted: ';
      setFieldError(el.nickInput, el.nickError, context + reason);
    } else if (info && info.kind === 'leave') {
      context = 'Leaving ' + info.room + ': ';
    }
    showError(context + reason + ' [' + code + ']', code);
  }

  function leaveRoomLocally(name) {
    state.rooms.delete(name);
    if (state.current === name) {
      const first = state.rooms.keys().next();
      state.current = first.done ? null : first.value;
    }
    renderAll();
    saveRooms();
  }

  function handleFrame(data) {
    if (typeof data !== 'string') return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (e) {
      return;
    }
    if (!msg || typeof msg !== 'object' || typeof msg.type !== 'string') return;
    const info = (msg.type === 'joined' || msg.type === 'left' || msg.type === 'ack' || msg.type === 'error')
      ? takeRef(msg.ref) : null;
    switch (msg.type) {
      case 'message': onMessage(msg); break;
      case 'presence': onPresence(msg); break;
      case 'presence_batch': onPresenceBatch(msg); break;
      case 'joined': onJoined(msg, info); break;
      case 'left': onLeft(msg, info); break;
      case 'ack': break; // the message event itself shows the text
      case 'error': onServerError(msg, info); break;
      default: break; // newer server, unknown event: ignore
    }
  }

  /* ---------- connection ---------- */

  /**
   * The WebSocket's interface (readyState, send, close, onopen/onmessage/onclose) over
   * Server-Sent Events and the HTTP publish API, for browsers or networks where no WebSocket
   * opens. Commands become requests; replies become the frames the WebSocket would deliver.
   */
  function SseSocket() {
    const self = this;
    self.readyState = 0;
    self.onopen = self.onmessage = self.onclose = null;
    const rooms = new Map(); // name -> the client's ref of its pending join, or null
    const positions = new Map(); // name -> 'EPOCH:OFFSET', from the stream's event ids
    let nick = '';
    let source = null;
    let reopenTimer = null;
    let streamRooms = [];

    function deliver(obj) {
      if (self.readyState === 1 && self.onmessage) self.onmessage({ data: JSON.stringify(obj) });
    }
    function later(fn) { win.setTimeout(fn, 0); }
    function remember(id) {
      // 'EPOCH:OFFSET' for one room, 'ROOM=EPOCH:OFFSET,...' for several (see docs/protocol.md)
      if (!id) return;
      id.split(',').forEach((part) => {
        const eq = part.indexOf('=');
        if (eq === -1 && streamRooms.length === 1) positions.set(streamRooms[0], part);
        else if (eq > 0) positions.set(part.slice(0, eq), part.slice(eq + 1));
      });
    }
    function reopen() {
      reopenTimer = null;
      if (source) { source.close(); source = null; }
      streamRooms = Array.from(rooms.keys());
      if (!streamRooms.length || self.readyState !== 1) return;
      let url = '/sse?' + streamRooms.map((n) => 'room=' + encodeURIComponent(n)).join('&');
      if (nick) url += '&nick=' + encodeURIComponent(nick);
      const id = streamRooms.filter((n) => positions.has(n)).map((n) => n + '=' + positions.get(n)).join(',');
      if (id) url += '&lastEventId=' + encodeURIComponent(id);
      const es = new win.EventSource(url);
      source = es;
      const handle = (ev) => {
        if (source !== es) return;
        remember(ev.lastEventId);
        let msg;
        try { msg = JSON.parse(ev.data); } catch (e) { return; }
        if (msg.type === 'joined' || msg.type === 'error') {
          // the stream joins with ref = the room's name; give the client its own ref back
          const name = typeof msg.ref === 'string' ? msg.ref : msg.room;
          if (rooms.has(name) && rooms.get(name) !== null) {
            msg.ref = rooms.get(name);
            rooms.set(name, null);
          } else {
            delete msg.ref;
          }
        }
        deliver(msg);
      };
      ['joined', 'message', 'presence', 'presence_batch', 'error'].forEach((kind) => es.addEventListener(kind, handle));
      es.onerror = () => {
        // CONNECTING: the browser resumes by itself with Last-Event-ID; CLOSED: it gave up
        if (source === es && es.readyState === 2) fail('the event stream failed');
      };
    }
    function schedule() {
      if (reopenTimer === null) reopenTimer = win.setTimeout(reopen, 0);
    }
    function fail(reason) {
      if (self.readyState === 3) return;
      self.readyState = 3;
      if (source) { source.close(); source = null; }
      if (self.onclose) self.onclose({ code: 1006, reason: reason });
    }
    async function publish(cmd) {
      const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
      if (state.api.token) headers.Authorization = 'Bearer ' + state.api.token;
      let res = null;
      let body = null;
      try {
        res = await win.fetch('/api/rooms/' + encodeURIComponent(cmd.room) + '/messages', {
          method: 'POST', headers: headers, credentials: 'same-origin', cache: 'no-store',
          body: JSON.stringify({ nick: nick || 'guest', text: cmd.text }),
        });
        try { body = await res.json(); } catch (e) { body = null; }
      } catch (e) {
        deliver({ type: 'error', ref: cmd.ref, code: 'unavailable', reason: 'the server is unreachable' });
        return;
      }
      if (res.ok && body && Number.isInteger(body.offset)) {
        deliver({ type: 'ack', ref: cmd.ref, offset: body.offset });
      } else {
        deliver({
          type: 'error', ref: cmd.ref,
          code: body && typeof body.error === 'string' ? body.error : 'unavailable',
          reason: body && typeof body.reason === 'string' ? body.reason : 'HTTP ' + res.status,
        });
      }
    }

    self.send = function (data) {
      if (self.readyState !== 1) throw new Error('not open');
      const cmd = JSON.parse(data);
      if (cmd.type === 'join') {
        if (cmd.nick) nick = cmd.nick;
        rooms.set(cmd.room, cmd.ref === undefined ? null : cmd.ref);
        if (!positions.has(cmd.room) && Number.isInteger(cmd.since) && cmd.epoch) {
          positions.set(cmd.room, cmd.epoch + ':' + cmd.since);
        }
        schedule();
      } else if (cmd.type === 'leave') {
        rooms.delete(cmd.room);
        positions.delete(cmd.room);
        schedule();
        later(() => deliver({ type: 'left', room: cmd.room, ref: cmd.ref }));
      } else if (cmd.type === 'say') {
        publish(cmd);
      } else if (cmd.type === 'nick') {
        nick = cmd.nick; // said with each later message; the stream's presence on its next reopen
      }
    };
    self.close = function () {
      if (self.readyState === 3) return;
      later(() => fail('closed'));
    };
    later(() => {
      if (self.readyState !== 0) return;
      self.readyState = 1;
      if (self.onopen) self.onopen();
      schedule();
    });
  }

  function wsUrl() {
    return (win.location.protocol === 'https:' ? 'wss://' : 'ws://') + win.location.host + '/ws';
  }

  function clearTimers() {
    const c = state.conn;
    if (c.retryTimer !== null) win.clearTimeout(c.retryTimer);
    if (c.tickTimer !== null) win.clearInterval(c.tickTimer);
    if (c.connectTimer !== null) win.clearTimeout(c.connectTimer);
    c.retryTimer = c.tickTimer = c.connectTimer = null;
    c.retryAt = null;
  }

  function connect() {
    const c = state.conn;
    clearTimers();
    if (c.ws) return;
    c.status = c.everOpened || c.attempt > 0 ? 'reconnecting' : 'connecting';
    renderConnState();
    let ws;
    if (c.transport === 'websocket' && typeof win.WebSocket !== 'function' &&
        typeof win.EventSource === 'function') {
      c.transport = 'sse'; // this browser has no WebSocket at all
    }
    try {
      ws = c.transport === 'sse' ? new SseSocket() : new win.WebSocket(wsUrl(), SUBPROTOCOL);
    } catch (e) {
      c.failedSince += 1; // like an attempt that never opened: the last close keeps saying why
      if (c.transport === 'websocket' && typeof win.EventSource === 'function') c.transport = 'sse';
      scheduleReconnect();
      return;
    }
    c.ws = ws;
    c.openedAt = null;
    c.connectTimer = win.setTimeout(() => {
      if (c.ws === ws && ws.readyState === 0) ws.close();
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => { if (c.ws === ws) socketOpened(); };
    ws.onmessage = (ev) => { if (c.ws === ws) handleFrame(ev.data); };
    ws.onclose = (ev) => { if (c.ws === ws) socketClosed(ev.code, ev.reason); };
    ws.onerror = () => { /* a close event follows */ };
  }

  function socketOpened() {
    const c = state.conn;
    clearTimers();
    c.status = 'online';
    c.attemptAtOpen = c.attempt;
    c.attempt = 0;
    c.openedAt = Date.now();
    c.everOpened = true;
    if (c.transport === 'websocket') c.wsOpened = true;
    c.lastClose = null;
    c.failedSince = 0;
    if (state.lastError && state.lastError.code === 'connection') clearError();
    state.rooms.forEach((room) => sendJoin(room));
    refreshKnown();
    renderConnState();
    renderTabs();
    renderRoomHeader();
  }

  function socketClosed(code, reason) {
    const c = state.conn;
    const openFor = c.openedAt !== null ? Date.now() - c.openedAt : null;
    c.ws = null;
    c.openedAt = null;
    c.attempt = attemptAfterClose(c.attempt, c.attemptAtOpen, openFor, code);
    if (openFor !== null) {
      // The close of a connection that was open says why (e.g. 1001 "server shutting down");
      // the refused attempts that follow while the server is away do not replace it.
      c.lastClose = { code: code, reason: reason || '' };
      c.failedSince = 0;
    } else {
      c.failedSince += 1;
    }
    if (c.transport === 'websocket' && !c.wsOpened && openFor === null &&
        c.attempt >= WS_FALLBACK_AFTER && typeof win.EventSource === 'function') {
      c.transport = 'sse'; // a WebSocket never opened here: something in between refuses it
      c.attempt = 0;
    }
    // Says that were never acknowledged may or may not have been delivered.
    state.refs.forEach((info) => {
      if (info.kind !== 'say') return;
      const room = state.rooms.get(info.room);
      if (!room) return;
      const preview = info.text.length > 60 ? info.text.slice(0, 60) + '…' : info.text;
      // The preview is isolated (FSI ... PDI) so that a direction override in it cannot
      // reorder the rest of the sentence.
      appendEntry(room, addNotice(room,
        'The connection dropped before the server confirmed “\u2068' + preview +
        '\u2069”. If it does not appear above after reconnecting, send it again.', Date.now()));
    });
    state.refs.clear();
    state.rooms.forEach((room) => { room.status = 'offline'; room.pendingJoin = null; });
    if (code === 1008 || code === 1009 || code === 1011) {
      showError('Disconnected: ' + describeClose(code, reason) + ' Reconnecting…', 'connection');
    }
    scheduleReconnect();
    renderTabs();
    renderRoomHeader();
  }

  function scheduleReconnect() {
    const c = state.conn;
    clearTimers();
    c.ws = null;
    const delay = backoffDelay(c.attempt);
    c.attempt += 1;
    c.status = 'reconnecting';
    c.retryAt = Date.now() + delay;
    c.retryTimer = win.setTimeout(() => { c.retryTimer = null; connect(); }, delay);
    c.tickTimer = win.setInterval(renderConnState, 250);
    renderConnState();
  }

  function reconnectNow() {
    const c = state.conn;
    if (c.ws || c.status !== 'reconnecting') return;
    connect();
  }

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
      const res = await win.fetch('/api/rooms', {
        headers: { Accept: 'application/json' }, cache: 'no-store', credentials: 'same-origin',
        signal: ctrl ? ctrl.signal : undefined,
      });
      const body = res.ok ? await res.json() : null;
      if (gen === known.gen && body && Array.isArray(body.rooms)) {
        known.rooms = body.rooms;
        renderKnown();
      }
    } catch (e) {
      /* unreachable or not JSON: keep what is shown */
    } finally {
      if (abortTimer !== null) win.clearTimeout(abortTimer);
    }
    if (gen === known.gen && doc.visibilityState !== 'hidden') {
      known.timer = win.setTimeout(refreshKnown, KNOWN_POLL_MS);
    }
  }

  /* ---------- sheets (narrow screens): members, connections ---------- */

  function isNarrow() {
    return typeof win.matchMedia === 'function' && win.matchMedia(NARROW).matches;
  }

  /** Open or close the member list; on a narrow screen it is a sheet over the chat. */
  function setMembersOpen(open) {
    if (open && state.api.open) setConnectionsOpen(false);
    state.membersOpen = open;
    el.layout.classList.toggle('with-members', open);
    el.membersToggle.setAttribute('aria-expanded', open ? 'true' : 'false');
    if (open && isNarrow()) el.sheetClose.focus(); // the toggle is under the sheet now
  }

  /** "Back to the chat": close whichever sheet is open and give the focus back to its toggle. */
  function closeSheet() {
    if (state.membersOpen) {
      setMembersOpen(false);
      if (!el.membersToggle.hidden) el.membersToggle.focus();
    }
    if (state.api.open) {
      setConnectionsOpen(false);
      el.connToggle.focus();
    }
  }

  /* ---------- connections panel ---------- */

  function setConnectionsOpen(open) {
    const api = state.api;
    if (open && state.membersOpen) setMembersOpen(false);
    api.open = open;
    el.panel.hidden = !open;
    el.connToggle.setAttribute('aria-expanded', open ? 'true' : 'false');
    el.layout.classList.toggle('with-connections', open);
    api.gen += 1;
    if (api.timer !== null) win.clearTimeout(api.timer);
    api.timer = null;
    renderTokenForm();
    if (open) pollConnections();
  }

  function renderTokenForm() {
    el.tokenForm.hidden = !(state.api.needsToken || state.api.token);
    el.tokenClear.hidden = !state.api.token;
  }

  async function pollConnections() {
    const api = state.api;
    api.gen += 1;
    const gen = api.gen;
    if (api.timer !== null) win.clearTimeout(api.timer);
    api.timer = null;
    let keepPolling = true;
    const headers = { Accept: 'application/json' };
    if (api.token) headers.Authorization = 'Bearer ' + api.token;
    const ctrl = typeof win.AbortController === 'function' ? new win.AbortController() : null;
    const abortTimer = ctrl ? win.setTimeout(() => ctrl.abort(), 5000) : null;
    try {
      const res = await win.fetch('/api/connections', {
        headers: headers, cache: 'no-store', credentials: 'same-origin',
        signal: ctrl ? ctrl.signal : undefined,
      });
      let body = null;
      try { body = await res.json(); } catch (e) { body = null; }
      if (gen !== api.gen || !api.open) return;
      if (res.status === 401 || res.status === 403) {
        const reason = body && typeof body.reason === 'string' ? body.reason : '';
        api.needsToken = true;
        el.apiStatus.textContent = (api.token
          ? 'The API token was not accepted'
          : 'The connections API needs a token') + (reason ? ': ' + reason.replace(/\.?$/, '.') : '.') +
          ' Enter it below.';
        renderTokenForm();
        keepPolling = false; // wait for a token
      } else if (!res.ok) {
        const reason = body && typeof body.reason === 'string' ? body.reason : res.statusText;
        el.apiStatus.textContent = 'Could not load connections: HTTP ' + res.status + (reason ? ' – ' + reason : '');
      } else {
        api.needsToken = false;
        renderTokenForm();
        renderConnections(body || {});
      }
    } catch (e) {
      if (gen !== api.gen || !api.open) return;
      el.apiStatus.textContent = 'Could not load connections: ' +
        (e && e.name === 'AbortError' ? 'timed out' : 'server unreachable') + '. Retrying…';
    } finally {
      if (abortTimer !== null) win.clearTimeout(abortTimer);
    }
    if (keepPolling && gen === api.gen && api.open) {
      api.timer = win.setTimeout(pollConnections, POLL_MS);
    }
  }

  function renderConnections(data) {
    state.api.last = data;
    const list = Array.isArray(data.connections) ? data.connections.slice() : [];
    list.sort((a, b) => (a.id || 0) - (b.id || 0));
    const listening = Array.isArray(data.listening) ? data.listening : [];
    el.listening.textContent = listening.length ? listening.map(String).join(', ') : 'unknown';

    const tbody = el.table.tBodies[0];
    const frag = doc.createDocumentFragment();
    let nWs = 0;
    list.forEach((c) => {
      const isWs = String(c.protocol || '').toLowerCase() === 'websocket';
      if (isWs) nWs += 1;
      const tr = h('tr', isWs ? 'proto-websocket' : 'proto-http');
      if (c.id !== undefined) tr.setAttribute('data-id', String(c.id));
      const cells = [
        [c.id !== undefined ? String(c.id) : '', 'num'],
        [peerOf(c), 'mono'],
        [describeProtocol(c), 'proto'],
        [formatBytes(c.bytes_in), 'num'],
        [formatBytes(c.bytes_out), 'num'],
        [formatAge(c.age), 'num'],
        [Number.isFinite(c.requests) ? String(c.requests) : '–', 'num'],
      ];
      cells.forEach((pair) => tr.appendChild(h('td', pair[1], pair[0])));
      if (isWs && c.subprotocol) {
        // Same text as describeProtocol(), with the subprotocol on its own line.
        const cell = tr.cells[2];
        cell.textContent = 'WebSocket' + (c.path ? ' ' + c.path : '') + ' ';
        cell.appendChild(h('span', 'subprotocol', '(' + c.subprotocol + ')'));
      }
      tr.cells[3].title = c.bytes_in + ' bytes received by the server';
      tr.cells[4].title = c.bytes_out + ' bytes sent by the server';
      frag.appendChild(tr);
    });
    if (!list.length) {
      const tr = h('tr');
      const td = h('td', 'muted', 'No open connections.');
      td.colSpan = 7;
      tr.appendChild(td);
      frag.appendChild(tr);
    }
    tbody.textContent = '';
    tbody.appendChild(frag);
    el.apiStatus.textContent = list.length + ' connection' + (list.length === 1 ? '' : 's') +
      ' (' + nWs + ' WebSocket, ' + (list.length - nWs) + ' HTTP); this panel’s own polling request is one of the HTTP ones. Updated ' +
      new Date().toLocaleTimeString() + '.';
  }

  /* ---------- wiring ---------- */

  function restore() {
    let nick = storageGet('localStorage', NICK_KEY) || '';
    if (validateNick(nick)) nick = 'guest-' + String(Math.floor(1000 + Math.random() * 9000));
    state.nick = nick;
    storageSet('localStorage', NICK_KEY, nick);
    el.nickInput.value = nick;
    try {
      const saved = JSON.parse(storageGet('sessionStorage', ROOMS_KEY) || 'null');
      if (saved && Array.isArray(saved.rooms)) {
        saved.rooms.forEach((name) => {
          if (typeof name === 'string' && !validateRoom(name) && !state.rooms.has(name)) {
            const room = createRoom(name);
            room.status = 'offline';
            state.rooms.set(name, room);
          }
        });
        if (typeof saved.current === 'string' && state.rooms.has(saved.current)) state.current = saved.current;
        else if (state.rooms.size) state.current = state.rooms.keys().next().value;
      }
    } catch (e) { /* ignore a corrupt entry */ }
  }

  function wire() {
    el.nickForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      setNick(el.nickInput.value);
    });
    el.nickInput.addEventListener('blur', () => {
      if (el.nickInput.value.trim() !== state.nick) setNick(el.nickInput.value);
    });
    el.joinForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const name = el.roomInput.value.trim();
      if (joinRoom(name)) {
        el.roomInput.value = '';
        el.messageInput.focus();
      }
    });
    el.roomInput.addEventListener('input', () => {
      if (!el.roomError.hidden) setFieldError(el.roomInput, el.roomError, null);
    });
    el.tabs.addEventListener('click', (ev) => {
      const target = ev.target instanceof win.Element ? ev.target.closest('button') : null;
      if (!target) return;
      const leave = target.getAttribute('data-leave');
      if (leave !== null) {
        const li = target.closest('li');
        const next = li && (li.nextElementSibling || li.previousElementSibling);
        leaveRoom(leave);
        const focusTo = next && next.querySelector('button[data-room]');
        (focusTo || el.roomInput).focus();
        return;
      }
      const name = target.getAttribute('data-room');
      if (name !== null) switchRoom(name);
    });
    el.messageForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      sendText();
    });
    el.messageInput.addEventListener('input', () => {
      if (!el.messageError.hidden) setFieldError(el.messageInput, el.messageError, null);
    });
    el.bannerDismiss.addEventListener('click', clearError);
    el.reconnect.addEventListener('click', reconnectNow);
    el.connToggle.addEventListener('click', () => setConnectionsOpen(!state.api.open));
    el.membersToggle.addEventListener('click', () => setMembersOpen(!state.membersOpen));
    el.sheetClose.addEventListener('click', closeSheet);
    doc.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && isNarrow() && (state.membersOpen || state.api.open)) {
        ev.preventDefault();
        closeSheet();
      }
    });
    el.known.addEventListener('click', (ev) => {
      const target = ev.target instanceof win.Element ? ev.target.closest('button[data-join]') : null;
      if (!target) return;
      if (joinRoom(target.getAttribute('data-join'))) el.messageInput.focus();
    });
    el.messages.addEventListener('scroll', () => { stuckToBottom = nearBottom(); }, { passive: true });
    if (typeof win.ResizeObserver === 'function') {
      new win.ResizeObserver(() => { if (stuckToBottom) scrollToBottom(); }).observe(el.messages);
    }
    doc.addEventListener('visibilitychange', () => {
      if (doc.visibilityState === 'visible') refreshKnown();
    });
    el.tokenForm.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const token = el.tokenInput.value.trim();
      if (!token) return;
      state.api.token = token;
      storageSet('sessionStorage', TOKEN_KEY, token);
      el.tokenInput.value = '';
      el.apiStatus.textContent = 'Token saved for this tab; loading…';
      renderTokenForm();
      if (state.api.open) pollConnections();
    });
    el.tokenClear.addEventListener('click', () => {
      state.api.token = '';
      storageSet('sessionStorage', TOKEN_KEY, null);
      el.tokenInput.value = '';
      renderTokenForm();
      if (state.api.open) pollConnections();
    });
    win.addEventListener('online', reconnectNow);
  }

  restore();
  wire();
  renderAll();
  connect(); // and once it is open, refreshKnown() reads the server's rooms

  win.portshare = {
    version: VERSION,
    state: state,
    logic: logic,
    actions: {
      join: joinRoom,
      leave: leaveRoom,
      switchTo: switchRoom,
      setNick: setNick,
      send: function (text) { el.messageInput.value = text; return sendText(); },
      reconnectNow: reconnectNow,
      transport: function () { return state.conn.transport; },
      setConnectionsOpen: setConnectionsOpen,
      setMembersOpen: setMembersOpen,
      refreshRooms: refreshKnown,
    },
  };
})(typeof window !== 'undefined' ? window : null);
