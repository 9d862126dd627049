/*
 * The connection to the chat: one WebSocket to `/ws` (subprotocol `portshare.chat.v1`), or
 * its SSE + HTTP stand-in (sse.js), kept up with reconnects, and the rooms it is in. No DOM:
 * it tells its caller what happened through events (it is an EventTarget), so that a page
 * other than the built-in client can use it as it is.
 *
 *   const conn = connect({ nick: 'alice' });
 *   conn.addEventListener('message', (e) => show(e.detail.room.name, e.detail.msg));
 *   conn.join('lobby');
 *   conn.say('lobby', 'hello');
 *
 * Theory of operation
 * -------------------
 * The set of rooms the user wants to be in (`rooms`), not the socket, is the source of truth:
 * whenever a socket opens, every room in the set is (re)joined, a rejoin with `since` and
 * `epoch` (rooms.js) so that the server replays what was said meanwhile; duplicates are
 * dropped before anyone hears of them. When the socket closes, reconnection is scheduled
 * with exponential backoff plus jitter (reconnect.js); the attempt counter resets once a
 * connection has opened (unless it dies again within a second, which counts as a failed
 * attempt, so a flapping server is not hammered).
 *
 * Fallback: when no WebSocket can be opened (no `WebSocket` in the browser, or
 * WS_FALLBACK_AFTER retries in a row that never opened, e.g. a proxy that refuses the
 * Upgrade), the connection switches to an SseSocket (sse.js) for good. `state.transport`
 * says which is in use.
 *
 * Commands carry a `ref` (a number); `refs` maps each one not answered yet to what it was,
 * so that a reply (`joined`, `left`, `ack`, `error`) is matched to its command. Says still
 * unanswered when a socket closes may or may not have been delivered: the `close` event
 * lists them.
 *
 * Events (each a ConnectionEvent; `detail` says what happened):
 *
 *   statechange     `state` changed (status, attempt, retryAt, transport)
 *   open            a socket opened (`state.status` is 'online'); the rooms' joins are sent
 *   close           {code, reason, unconfirmed: [{room, text}]}: the socket closed; every
 *                   room is 'offline' and a reconnect is about to be scheduled
 *   joined          {room, msg, result}: a `joined` reply applied (result: rooms.applyJoined)
 *   message         {room, msg}: a message not seen before
 *   presence        {room, msg}: a join or leave, applied to room.members
 *   presence_batch  {room, msg}: a big room's joins and leaves, applied to room.members
 *   left            {name, room, own}: out of a room; `own`: the reply to leave(), else the
 *                   server's doing (the room was removed from `rooms`)
 *   ack             {msg, info}: a say was accepted
 *   error           {msg, info, room, dropped}: the server refused a command (`info`: what
 *                   it was, or null); a first join refused drops its room (`dropped`), a
 *                   rejoin refused marks it 'failed', a say refused with `not_joined`
 *                   rejoins its room
 *
 * What it takes from the browser (WebSocket, EventSource, fetch, timers, the clock, random
 * numbers) can be passed in, which is how tests/js/connection.test.mjs drives it.
 */

import { SUBPROTOCOL, chatBase, parseEvent, isReply } from './wire.js';
import { backoffDelay, attemptAfterClose } from './reconnect.js';
import {
  createRoom, joinCommand, applyJoined, acceptOffset, applyMembership, applyPresenceBatch,
} from './rooms.js';
import { SseSocket } from './sse.js';

export const CONNECT_TIMEOUT_MS = 10000;
// Retries of a WebSocket that never opened, in a row, before falling back to SSE + HTTP (the
// fallback comes when the WS_FALLBACK_AFTER + 1st WebSocket closes without having opened)
export const WS_FALLBACK_AFTER = 2;

/** An event of a Connection, with what happened in `detail`. */
export class ConnectionEvent extends Event {
  constructor(type, detail) {
    super(type);
    this.detail = detail;
  }
}

/**
 * What the connection uses from its environment, each read when used (a page may replace
 * `window.WebSocket` before connecting), and each replaceable through `options`.
 */
function hostOf(options) {
  const o = options;
  const g = globalThis;
  const base = () => ('base' in o ? o.base : chatBase(g.location));
  return {
    WebSocket: () => ('WebSocket' in o ? o.WebSocket : g.WebSocket),
    EventSource: () => ('EventSource' in o ? o.EventSource : g.EventSource),
    fetch: (url, init) => (o.fetch || g.fetch)(url, init),
    setTimeout: (fn, ms) => (o.setTimeout || g.setTimeout)(fn, ms),
    clearTimeout: (id) => (o.clearTimeout || g.clearTimeout)(id),
    now: () => (o.now ? o.now() : Date.now()),
    random: () => (o.random ? o.random() : Math.random()),
    token: () => (o.token ? o.token() : ''),
    base: base,
    url: () => o.url || (g.location.protocol === 'https:' ? 'wss://' : 'ws://') + g.location.host + base() + '/ws',
  };
}

export class Connection extends EventTarget {
  /**
   * @param {object} [options]
   * @param {string} [options.nick] the nickname to join with ('' lets the server choose)
   * @param {string} [options.url] the WebSocket's URL (default: `/ws` under `base` on this
   *   page's host)
   * @param {string} [options.base] the path the chat's `/ws`, `/sse` and `/api` are under
   *   (default: the page's directory, wire.chatBase: '' at `/`, '/chat' for a page at `/chat/`)
   * @param {function(): string} [options.token] the API token for the HTTP publish API (SSE)
   * @param {*} [options.WebSocket] and `EventSource`, `fetch`, `setTimeout`, `clearTimeout`,
   *   `now`, `random`: stand-ins for the browser's
   */
  constructor(options) {
    super();
    this.host = hostOf(options || {});
    this.nick = (options && options.nick) || '';
    /** name -> room state (rooms.createRoom), in the order joined */
    this.rooms = new Map();
    /** ref -> {kind: 'join'|'say'|'leave'|'nick', room?, text?, nick?} */
    this.refs = new Map();
    this.nextRef = 1;
    this.state = {
      ws: null,
      status: 'connecting', // 'connecting' | 'online' | 'reconnecting' | 'closed' (close())
      attempt: 0,
      attemptAtOpen: 0,
      openedAt: null,
      everOpened: false,
      retryAt: null,
      retryTimer: null,
      connectTimer: null,
      lastClose: null, // {code, reason} of the last connection that was open; null once online
      failedSince: 0, // attempts since then that never opened
      transport: 'websocket', // 'websocket' | 'sse' (the fallback)
      wsOpened: false, // whether a WebSocket ever opened (then failures are not a proxy's)
    };
  }

  /** Open the first socket (and keep one open from then on); after close(), open again. */
  start() {
    if (this.state.status === 'closed') this.state.status = 'connecting';
    this.connect();
  }

  /**
   * Stop for good: close the socket, reconnect no more (until start()). The rooms stay
   * wanted, 'offline', so that start() rejoins them (with `since`: nothing said meanwhile is
   * lost while history holds it). Emits `statechange` (status 'closed'), no `close`.
   */
  close() {
    const c = this.state;
    this.clearTimers();
    const ws = c.ws;
    c.ws = null; // its close event, when it comes, is no longer ours
    c.openedAt = null;
    c.status = 'closed';
    this.refs.clear();
    this.rooms.forEach((room) => { room.status = 'offline'; room.pendingJoin = null; });
    if (ws) {
      try { ws.close(1000, 'closed by the page'); } catch (e) { /* already closing */ }
    }
    this.emit('statechange', {});
  }

  /* ---------- commands ---------- */

  /** Whether a socket is open: commands sent now reach the server. */
  isOnline() {
    const ws = this.state.ws;
    return this.state.status === 'online' && ws !== null && ws.readyState === 1;
  }

  /** Send one command as it is. @return {boolean} false when it could not be sent */
  send(obj) {
    if (!this.isOnline()) return false;
    try {
      this.state.ws.send(JSON.stringify(obj));
      return true;
    } catch (e) {
      return false;
    }
  }

  /**
   * Be in room `name` from now on: join it now if online, else as soon as a socket opens.
   * The name must be valid (wire.validateRoom). With `resume` (the `epoch` and last `offset`
   * of an earlier visit, e.g. kept by the page in sessionStorage), the first join already
   * asks for what was said since then, as a rejoin does. @return the room's state
   * @param {string} name
   * @param {{since: number, epoch?: string}} [resume]
   */
  join(name, resume) {
    let room = this.rooms.get(name);
    if (!room) {
      room = createRoom(name);
      room.status = 'offline';
      if (resume && Number.isInteger(resume.since) && resume.since >= 0) {
        room.joinedOnce = true; // joinCommand sends since (and epoch): the server replays
        room.offset = resume.since;
        room.epoch = typeof resume.epoch === 'string' ? resume.epoch : null;
      }
      this.rooms.set(name, room);
    }
    if (room.status !== 'joined' && room.status !== 'joining' && this.isOnline()) this.sendJoin(room);
    return room;
  }

  /** Leave room `name` (forgotten at once; the server is told when online). */
  leave(name) {
    const room = this.rooms.get(name);
    if (!room) return false;
    if (this.isOnline() && room.status !== 'failed') {
      this.send({ type: 'leave', room: name, ref: this.allocRef({ kind: 'leave', room: name }) });
    }
    this.rooms.delete(name);
    return true;
  }

  /** Say `text` in room `name`. @return {boolean} false when it could not be sent */
  say(name, text) {
    const ref = this.allocRef({ kind: 'say', room: name, text: text });
    if (!this.send({ type: 'say', room: name, text: text, ref: ref })) {
      this.takeRef(ref);
      return false;
    }
    return true;
  }

  /** Use nickname `nick` from now on (it must be valid: wire.validateNick). */
  setNick(nick) {
    if (nick === this.nick) return;
    this.nick = nick;
    // `nick` has no reply unless it fails: keep only the latest ref so they do not pile up.
    this.refs.forEach((info, ref) => { if (info.kind === 'nick') this.refs.delete(ref); });
    if (this.isOnline()) this.send({ type: 'nick', nick: nick, ref: this.allocRef({ kind: 'nick', nick: nick }) });
  }

  /** Reconnect at once instead of waiting for the scheduled attempt. */
  reconnectNow() {
    const c = this.state;
    if (c.ws || c.status !== 'reconnecting') return; // also not after close()
    this.connect();
  }

  sendJoin(room) {
    const cmd = joinCommand(room, this.nick);
    cmd.ref = this.allocRef({ kind: 'join', room: room.name });
    room.pendingJoin = cmd;
    room.status = 'joining';
    if (!this.send(cmd)) {
      room.status = 'offline';
      room.pendingJoin = null;
      this.takeRef(cmd.ref);
    }
  }

  allocRef(info) {
    const ref = this.nextRef;
    this.nextRef += 1;
    this.refs.set(ref, info);
    return ref;
  }

  takeRef(ref) {
    if (ref === undefined || ref === null) return null;
    let key = ref;
    if (!this.refs.has(key) && typeof ref === 'string' && /^\d+$/.test(ref)) key = Number(ref);
    const info = this.refs.get(key) || null;
    this.refs.delete(key);
    return info;
  }

  emit(type, detail) {
    this.dispatchEvent(new ConnectionEvent(type, detail));
  }

  /* ---------- events from the server ---------- */

  received(data) {
    const msg = parseEvent(data);
    if (msg === null) return;
    const info = isReply(msg) ? this.takeRef(msg.ref) : null;
    const room = typeof msg.room === 'string' ? this.rooms.get(msg.room) || null : null;
    switch (msg.type) {
      case 'message':
        if (room && acceptOffset(room, msg)) this.emit('message', { room: room, msg: msg });
        break;
      case 'presence':
        if (room) {
          applyMembership(room, msg);
          this.emit('presence', { room: room, msg: msg });
        }
        break;
      case 'presence_batch':
        if (room) {
          applyPresenceBatch(room, msg);
          this.emit('presence_batch', { room: room, msg: msg });
        }
        break;
      case 'joined':
        if (room) { // else: left before the reply arrived
          const result = applyJoined(room, msg, room.pendingJoin);
          this.emit('joined', { room: room, msg: msg, result: result });
        }
        break;
      case 'left':
        if (info && info.kind === 'leave') {
          this.emit('left', { name: msg.room, room: null, own: true }); // already forgotten
        } else if (room) {
          this.rooms.delete(msg.room);
          this.emit('left', { name: msg.room, room: room, own: false });
        }
        break;
      case 'ack':
        this.emit('ack', { msg: msg, info: info }); // the message event itself carries the text
        break;
      case 'error':
        this.refused(msg, info);
        break;
      default:
        break; // newer server, unknown event: ignore
    }
  }

  refused(msg, info) {
    let room = null;
    let dropped = false;
    if (info && info.kind === 'join') {
      room = this.rooms.get(info.room) || null;
      if (room && !room.joinedOnce) {
        this.rooms.delete(info.room);
        dropped = true;
      } else if (room) {
        room.status = 'failed';
        room.pendingJoin = null;
      }
    } else if (info && info.kind === 'say') {
      room = this.rooms.get(info.room) || null;
      if (msg.code === 'not_joined' && room && this.isOnline()) this.sendJoin(room); // server forgot us: rejoin
    }
    this.emit('error', { msg: msg, info: info, room: room, dropped: dropped });
  }

  /* ---------- the socket ---------- */

  clearTimers() {
    const c = this.state;
    if (c.retryTimer !== null) this.host.clearTimeout(c.retryTimer);
    if (c.connectTimer !== null) this.host.clearTimeout(c.connectTimer);
    c.retryTimer = c.connectTimer = null;
    c.retryAt = null;
  }

  connect() {
    const c = this.state;
    const host = this.host;
    this.clearTimers();
    if (c.ws || c.status === 'closed') return;
    c.status = c.everOpened || c.attempt > 0 ? 'reconnecting' : 'connecting';
    this.emit('statechange', {});
    const WebSocket = host.WebSocket();
    const canSse = typeof host.EventSource() === 'function';
    if (c.transport === 'websocket' && typeof WebSocket !== 'function' && canSse) {
      c.transport = 'sse'; // this browser has no WebSocket at all
    }
    let ws;
    try {
      ws = c.transport === 'sse' ? new SseSocket(host) : new WebSocket(host.url(), SUBPROTOCOL);
    } catch (e) {
      c.failedSince += 1; // like an attempt that never opened: the last close keeps saying why
      if (c.transport === 'websocket' && canSse) c.transport = 'sse';
      this.scheduleReconnect();
      return;
    }
    c.ws = ws;
    c.openedAt = null;
    c.connectTimer = host.setTimeout(() => {
      if (c.ws === ws && ws.readyState === 0) ws.close();
    }, CONNECT_TIMEOUT_MS);
    ws.onopen = () => { if (c.ws === ws) this.opened(); };
    ws.onmessage = (ev) => { if (c.ws === ws) this.received(ev.data); };
    ws.onclose = (ev) => { if (c.ws === ws) this.closed(ev.code, ev.reason); };
    ws.onerror = () => { /* a close event follows */ };
  }

  opened() {
    const c = this.state;
    this.clearTimers();
    c.status = 'online';
    c.attemptAtOpen = c.attempt;
    c.attempt = 0;
    c.openedAt = this.host.now();
    c.everOpened = true;
    if (c.transport === 'websocket') c.wsOpened = true;
    c.lastClose = null;
    c.failedSince = 0;
    this.rooms.forEach((room) => this.sendJoin(room));
    this.emit('open', {});
    this.emit('statechange', {});
  }

  closed(code, reason) {
    const c = this.state;
    const openFor = c.openedAt !== null ? this.host.now() - c.openedAt : null;
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
        c.attempt >= WS_FALLBACK_AFTER && typeof this.host.EventSource() === 'function') {
      c.transport = 'sse'; // a WebSocket never opened here: something in between refuses it
      c.attempt = 0;
    }
    // Says that were never acknowledged may or may not have been delivered.
    const unconfirmed = [];
    this.refs.forEach((info) => {
      if (info.kind === 'say' && this.rooms.has(info.room)) unconfirmed.push({ room: info.room, text: info.text });
    });
    this.refs.clear();
    this.rooms.forEach((room) => { room.status = 'offline'; room.pendingJoin = null; });
    this.emit('close', { code: code, reason: reason, unconfirmed: unconfirmed });
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    const c = this.state;
    this.clearTimers();
    c.ws = null;
    const delay = backoffDelay(c.attempt, this.host.random());
    c.attempt += 1;
    c.status = 'reconnecting';
    c.retryAt = this.host.now() + delay;
    c.retryTimer = this.host.setTimeout(() => { c.retryTimer = null; this.connect(); }, delay);
    this.emit('statechange', {});
  }
}

/**
 * A Connection, started: its first socket is being opened (state.status 'connecting').
 * @param {object} [options] see Connection
 */
export function connect(options) {
  const conn = new Connection(options);
  conn.start();
  return conn;
}
