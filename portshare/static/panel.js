/*
 * The connections panel: every TCP connection the server has open on its one port, read from
 * `GET /api/connections` every POLL_MS while the panel is open, with the API token when the
 * server asks for one (kept in this tab: sessionStorage). On a narrow screen the panel is a
 * sheet over the chat; opening it closes the member list.
 */

import { describeProtocol, formatAge, formatBytes, peerOf } from './format.js';
import { storageSet, TOKEN_KEY } from './storage.js';
import { chatBase } from './client/wire.js';

const POLL_MS = 2000;

/**
 * @param {Window} win the window of index.html
 * @param {object} state the client's state (`state.api` is the panel's)
 * @param {object} view the page (render.js)
 */
export function createPanel(win, state, view) {
  const el = view.el;
  const h = view.h;

  /** Open or close the panel; polling runs while it is open. */
  function setOpen(open) {
    const api = state.api;
    if (open && state.membersOpen) view.showMembers(false);
    api.open = open;
    el.panel.hidden = !open;
    el.connToggle.setAttribute('aria-expanded', open ? 'true' : 'false');
    el.layout.classList.toggle('with-connections', open);
    api.gen += 1;
    if (api.timer !== null) win.clearTimeout(api.timer);
    api.timer = null;
    renderTokenForm();
    if (open) poll();
  }

  function renderTokenForm() {
    el.tokenForm.hidden = !(state.api.needsToken || state.api.token);
    el.tokenClear.hidden = !state.api.token;
  }

  async function poll() {
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
      const res = await win.fetch(chatBase(win.location) + '/api/connections', {
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
      api.timer = win.setTimeout(poll, POLL_MS);
    }
  }

  function renderConnections(data) {
    state.api.last = data;
    const list = Array.isArray(data.connections) ? data.connections.slice() : [];
    list.sort((a, b) => (a.id || 0) - (b.id || 0));
    const listening = Array.isArray(data.listening) ? data.listening : [];
    el.listening.textContent = listening.length ? listening.map(String).join(', ') : 'unknown';

    const tbody = el.table.tBodies[0];
    const frag = view.doc.createDocumentFragment();
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

  /** Use `token` for the API from now on (this tab only); '' forgets it. */
  function setToken(token) {
    state.api.token = token;
    storageSet('sessionStorage', TOKEN_KEY, token || null);
    el.tokenInput.value = '';
    if (token) el.apiStatus.textContent = 'Token saved for this tab; loading…';
    renderTokenForm();
    if (state.api.open) poll();
  }

  return { setOpen, poll, setToken };
}
