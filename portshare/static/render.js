/*
 * The page: everything that reads or writes the DOM of index.html, except the connections
 * panel (panel.js). It shows the state (main.js builds it; see chat.js) and changes nothing
 * in it but `lastError` and `membersOpen`.
 *
 * What the person is told about the connection: `#conn-state` is one short line ("Online",
 * "Reconnecting in 3 s (attempt 2)"); `#conn-detail` says why, in words, from the close of
 * the last connection that was open (the server's own reason when it gave one, e.g. "Server
 * shutting down."). Attempts that fail afterwards (the server is still down) do not replace
 * that reason with a bare "connection lost". Close codes appear only in tooltips.
 * `#conn-transport` shows which transport is in use.
 *
 * Narrow screens (below 900 CSS pixels, a phone): the page itself never scrolls; the message
 * list does, between a compact header and the composer. The members and connections panes are
 * sheets over the chat, one at a time (see chat.js).
 *
 * Security: every string that came from a user or the server is put into the page with
 * textContent / createTextNode only, never as HTML.
 */

import { describeClose } from './client/reconnect.js';
import { knownRooms, sortedMembers, totalUnread } from './client/rooms.js';
import { HIDDEN_CHARS, formatClock, nickColour, splitHidden } from './format.js';

const NICK_COLOURS = 8;
const DEFAULT_ROOM = 'lobby';
const KNOWN_MAX = 20; // rooms of the server offered at most
// below this width the layout is one column and the side panes are sheets (see style.css)
const NARROW = '(max-width: 899.98px)';

const STATUS_TEXT = {
  offline: 'waiting for connection',
  joining: 'joining…',
  joined: '',
  failed: 'could not join',
};

/**
 * The page's elements, and the functions that render the state into them.
 * @param {Window} win the window of index.html
 * @param {object} state the client's state (see main.js)
 */
export function createView(win, state) {
  const doc = win.document;

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

  function currentRoom() {
    return state.current !== null ? state.rooms.get(state.current) || null : null;
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

  /* ---------- the log ---------- */

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

  /** Keep the message list at its end while it is there, whatever changes its height. */
  function followBottom() {
    el.messages.addEventListener('scroll', () => { stuckToBottom = nearBottom(); }, { passive: true });
    if (typeof win.ResizeObserver === 'function') {
      new win.ResizeObserver(() => { if (stuckToBottom) scrollToBottom(); }).observe(el.messages);
    }
  }

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

  /* ---------- tabs, members, header ---------- */

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
      if (state.membersOpen) showMembers(false);
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
    // why, in words: from the last connection that was open (see connection.js, closed)
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

  /* ---------- the members sheet ---------- */

  function isNarrow() {
    return typeof win.matchMedia === 'function' && win.matchMedia(NARROW).matches;
  }

  /**
   * Show or hide the member list; on a narrow screen it is a sheet over the chat (chat.js
   * closes the connections panel first: one sheet at a time).
   */
  function showMembers(open) {
    state.membersOpen = open;
    el.layout.classList.toggle('with-members', open);
    el.membersToggle.setAttribute('aria-expanded', open ? 'true' : 'false');
    if (open && isNarrow()) el.sheetClose.focus(); // the toggle is under the sheet now
  }

  return {
    doc, el, h, currentRoom, setFieldError, showError, clearError,
    renderEntry, appendEntry, renderLog, nearBottom, scrollToBottom, followBottom,
    renderTabs, renderKnown, revealTab, renderMembers, renderRoomHeader, renderConnState, renderAll,
    isNarrow, showMembers,
  };
}
