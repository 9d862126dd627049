// The reconnect policy (portshare/static/client/reconnect.js): backoff, attempts, close reasons.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  BACKOFF, attemptAfterClose, backoffDelay, describeClose,
} from '../../portshare/static/client/reconnect.js';

test('the delay doubles from 0.5 s up to 15 s', () => {
  // random = 0: the ceiling itself
  assert.deepEqual([0, 1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, 0)),
    [500, 1000, 2000, 4000, 8000, 15000, 15000]);
  assert.equal(backoffDelay(1000, 0), BACKOFF.maxMs);
  assert.equal(backoffDelay(-3, 0), 500);
});

test('the jitter takes at most half of the ceiling off', () => {
  assert.equal(backoffDelay(3, 0.999999), 2000);
  assert.equal(backoffDelay(3, 0.5), 3000);
  for (let i = 0; i < 200; i += 1) {
    const d = backoffDelay(2); // Math.random()
    assert.ok(d >= 1000 && d <= 2000, String(d));
  }
});

test('a connection that lasted keeps the counter it was given (0 after an open)', () => {
  assert.equal(attemptAfterClose(0, 4, 5000, 1006), 0);
  assert.equal(attemptAfterClose(3, 0, null, 1006), 3); // never opened
});

test('a connection that died within a second counts as a failed attempt', () => {
  assert.equal(attemptAfterClose(0, 4, BACKOFF.stableMs - 1, 1006), 4);
  assert.equal(attemptAfterClose(0, 4, BACKOFF.stableMs, 1006), 0);
});

test('"try again later" (1013) waits 2 s or more', () => {
  assert.equal(attemptAfterClose(0, 0, 5000, 1013), 2);
  assert.equal(attemptAfterClose(5, 0, null, 1013), 5);
});

test('a close is told in words: the server\'s reason, else the meaning of the code', () => {
  assert.equal(describeClose(1001, 'server shutting down'), 'Server shutting down.');
  assert.equal(describeClose(1008, 'Origin not allowed!'), 'Origin not allowed!');
  assert.equal(describeClose(1001, ''), 'The server is going away (restarting, perhaps).');
  assert.equal(describeClose(1013), 'The server is busy.');
  assert.equal(describeClose(4999, '  '), 'The connection was closed.');
});

test('a reason written by the browser or the client (1006, 0) is a lost connection', () => {
  assert.equal(describeClose(1006, 'the event stream failed.'),
    'The connection was lost (the event stream failed).');
  assert.equal(describeClose(0, 'refused'), 'The connection was lost (refused).');
  assert.equal(describeClose(1006), 'The connection was lost.');
});
