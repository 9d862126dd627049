/*
 * The WebSocket's interface (readyState, send, close, onopen/onmessage/onclose) over
 * Server-Sent Events and the HTTP publish API, for browsers or networks where no WebSocket
 * opens. Commands become requests; replies become the frames the WebSocket would deliver:
 *
 *   join, leave   reopen the one EventSource (`GET /sse?room=A&room=B`), resumed from each
 *                 room's last event id, so that it carries every joined room;
 *   say           `POST /api/rooms/R/messages`; its answer becomes an `ack` or an `error`;
 *   nick          said with each later message, and on the stream's next reopen.
 *
 * No DOM. What it needs from the browser (EventSource, fetch, setTimeout) and the API token
 * come from the `host` that connection.js passes in.
 */

/**
 * @param {object} host `EventSource()` (the constructor), `fetch`, `setTimeout`,
 *   `token()` (the API token for the publish API, or '') and optionally `base()` (the path
 *   `/sse` and `/api` are under, '' at the root)
 * @constructor
 */
export function SseSocket(host) {
  const self = this;
  self.readyState = 0;
  self.onopen = self.onmessage = self.onclose = null;
  const rooms = new Map(); // name -> the client's ref of its pending join, or null
  const positions = new Map(); // name -> 'EPOCH:OFFSET', from the stream's event ids
  let nick = '';
  let source = null;
  let reopenTimer = null;
  let streamRooms = [];

  // the path the chat's /sse and /api are under ('' at the root; see wire.chatBase)
  function base() { return typeof host.base === 'function' ? host.base() : ''; }
  function deliver(obj) {
    if (self.readyState === 1 && self.onmessage) self.onmessage({ data: JSON.stringify(obj) });
  }
  function later(fn) { host.setTimeout(fn, 0); }
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
    let url = base() + '/sse?' + streamRooms.map((n) => 'room=' + encodeURIComponent(n)).join('&');
    if (nick) url += '&nick=' + encodeURIComponent(nick);
    const id = streamRooms.filter((n) => positions.has(n)).map((n) => n + '=' + positions.get(n)).join(',');
    if (id) url += '&lastEventId=' + encodeURIComponent(id);
    const EventSource = host.EventSource();
    const es = new EventSource(url);
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
    if (reopenTimer === null) reopenTimer = host.setTimeout(reopen, 0);
  }
  function fail(reason) {
    if (self.readyState === 3) return;
    self.readyState = 3;
    if (source) { source.close(); source = null; }
    if (self.onclose) self.onclose({ code: 1006, reason: reason });
  }
  async function publish(cmd) {
    const headers = { 'Content-Type': 'application/json', Accept: 'application/json' };
    const token = host.token();
    if (token) headers.Authorization = 'Bearer ' + token;
    let res = null;
    let body = null;
    try {
      res = await host.fetch(base() + '/api/rooms/' + encodeURIComponent(cmd.room) + '/messages', {
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
