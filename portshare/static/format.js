/*
 * Text for the page: hidden characters made visible, nick colours, sizes, ages, times, and
 * the rows of the connections panel. Pure: no DOM, no timers, no I/O (formatClock reads the
 * local time zone through Date, nothing else); Node imports it for tests
 * (tests/js/format.test.mjs).
 */

// Invisible characters that can disguise a message: the explicit bidi embeddings, overrides
// and isolates (U+202A-U+202E, U+2066-U+2069: "gnp.exe" shown as "exe.png") and the
// zero-width space, word joiner and BOM. Joiners (U+200C/U+200D, needed by emoji and many
// scripts) and the LRM/RLM marks are harmless and left alone.
export const HIDDEN_CHARS = Object.freeze({
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
export function splitHidden(text) {
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

/** A small stable hash of a nick to pick one of `n` colour classes. */
export function nickColour(nick, n) {
  let h = 0;
  for (let i = 0; i < nick.length; i += 1) h = (h * 31 + nick.charCodeAt(i)) | 0;
  return Math.abs(h) % n;
}

export function formatBytes(n) {
  if (!Number.isFinite(n)) return '–';
  if (n < 1024) return n + ' B';
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
  if (n < 1024 * 1024 * 1024) return (n / 1024 / 1024).toFixed(1) + ' MiB';
  return (n / 1024 / 1024 / 1024).toFixed(2) + ' GiB';
}

export function formatAge(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return '–';
  if (seconds < 10) return seconds.toFixed(1) + ' s';
  const s = Math.floor(seconds);
  if (s < 60) return s + ' s';
  const m = Math.floor(s / 60);
  if (m < 60) return m + ' min ' + String(s % 60).padStart(2, '0') + ' s';
  const h = Math.floor(m / 60);
  return h + ' h ' + String(m % 60).padStart(2, '0') + ' min';
}

/** "14:05": a message's local time, hours and minutes. */
export function formatClock(ts) {
  const d = new Date(ts);
  return String(d.getHours()).padStart(2, '0') + ':' + String(d.getMinutes()).padStart(2, '0');
}

/** "HTTP/1.1 keep-alive" or "WebSocket /ws (portshare.chat.v1)". */
export function describeProtocol(c) {
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

export function peerOf(c) {
  if (typeof c.peer === 'string' && c.peer) return c.peer;
  if (c.host !== undefined && c.port !== undefined) {
    return String(c.host).indexOf(':') !== -1 ? '[' + c.host + ']:' + c.port : c.host + ':' + c.port;
  }
  return '?';
}
