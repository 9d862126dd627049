/*
 * The reconnect policy: how long to wait before the next attempt, how a close counts against
 * the attempts, and how to tell a person why the connection closed. Pure: no DOM, no timers
 * (the caller schedules), no I/O; Node imports it for tests (tests/js/reconnect.test.mjs).
 */

export const BACKOFF = Object.freeze({ baseMs: 500, maxMs: 15000, jitter: 0.5, stableMs: 1000 });

/**
 * Delay before reconnect attempt number `attempt` (0-based): 0.5 s doubling up to 15 s,
 * with "equal jitter" (a random value between half of and all of that ceiling).
 * @param {number} attempt consecutive failed attempts so far
 * @param {number} [random] a number in [0, 1); Math.random() when omitted
 */
export function backoffDelay(attempt, random) {
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
export function attemptAfterClose(attempt, attemptAtOpen, openForMs, code) {
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
export function describeClose(code, reason) {
  const said = typeof reason === 'string' ? reason.trim() : '';
  if (!said) return CLOSE_WORDS[code] || 'The connection was closed.';
  if (!code || code === 1006) return 'The connection was lost (' + said.replace(/[.!?]+$/, '') + ').';
  return said.charAt(0).toUpperCase() + said.slice(1) + (/[.!?]$/.test(said) ? '' : '.');
}
