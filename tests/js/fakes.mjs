/*
 * Stand-ins for what the web client's connection takes from the browser: a clock with
 * timers, a WebSocket, an EventSource and fetch. Each records what the code under test did
 * with it, and the test drives it (open, deliver, close) by hand. Not a test file itself.
 */

/** A clock whose timers run only when the test advances it. */
export class FakeClock {
  constructor(start = 1_000_000) {
    this.time = start;
    this.timers = new Map(); // id -> {at, fn}
    this.nextId = 1;
    this.now = () => this.time;
    this.setTimeout = (fn, ms) => {
      const id = this.nextId++;
      this.timers.set(id, { at: this.time + (ms || 0), fn });
      return id;
    };
    this.clearTimeout = (id) => { this.timers.delete(id); };
  }

  /** The delays of the pending timers, from now, soonest first. */
  pending() {
    return [...this.timers.values()].map((t) => t.at - this.time).sort((a, b) => a - b);
  }

  /** Move time on by `ms`, running each timer that falls due, in order. */
  advance(ms) {
    const end = this.time + ms;
    for (;;) {
      let due = null;
      for (const [id, t] of this.timers) {
        if (t.at <= end && (due === null || t.at < due[1].at)) due = [id, t];
      }
      if (due === null) break;
      this.timers.delete(due[0]);
      this.time = Math.max(this.time, due[1].at);
      due[1].fn();
    }
    this.time = end;
  }
}

/** A WebSocket that records what is sent; `sockets` lists every one made, in order. */
export function fakeWebSocketClass() {
  const sockets = [];
  class FakeWebSocket {
    constructor(url, protocol) {
      this.url = url;
      this.protocol = protocol;
      this.readyState = 0;
      this.sent = [];
      this.closeCalls = 0;
      this.onopen = this.onmessage = this.onclose = this.onerror = null;
      sockets.push(this);
    }

    send(data) {
      if (this.readyState !== 1) throw new Error('not open');
      this.sent.push(JSON.parse(data));
    }

    close() { this.closeCalls += 1; }

    // -- what the test does --
    open() { this.readyState = 1; this.onopen(); }
    deliver(obj) { this.onmessage({ data: typeof obj === 'string' ? obj : JSON.stringify(obj) }); }
    drop(code = 1006, reason = '') { this.readyState = 3; this.onclose({ code, reason }); }
  }
  return { FakeWebSocket, sockets };
}

/** An EventSource that records its URL; `sources` lists every one made, in order. */
export function fakeEventSourceClass() {
  const sources = [];
  class FakeEventSource {
    constructor(url) {
      this.url = url;
      this.readyState = 0;
      this.listeners = new Map();
      this.closed = false;
      this.onerror = null;
      sources.push(this);
    }

    addEventListener(kind, fn) { this.listeners.set(kind, fn); }
    close() { this.closed = true; this.readyState = 2; }

    // -- what the test does --
    emit(kind, obj, lastEventId = '') {
      this.listeners.get(kind)({ data: JSON.stringify(obj), lastEventId });
    }
  }
  return { FakeEventSource, sources };
}

/** Wait for promise callbacks queued so far (a fetch's answer, say) to run. */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}
