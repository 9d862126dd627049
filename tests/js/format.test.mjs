// Text for the page (portshare/static/format.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  HIDDEN_CHARS, describeProtocol, formatAge, formatBytes, formatClock, nickColour, peerOf,
  splitHidden,
} from '../../portshare/static/format.js';

test('hidden characters are split out, each named by its code point', () => {
  assert.deepEqual(splitHidden('gnp\u202Eexe.'), [
    { text: 'gnp', hidden: null },
    { text: '\u202E', hidden: 'U+202E' },
    { text: 'exe.', hidden: null },
  ]);
  assert.deepEqual(splitHidden('\u200B\uFEFF'), [
    { text: '\u200B', hidden: 'U+200B' },
    { text: '\uFEFF', hidden: 'U+FEFF' },
  ]);
  assert.deepEqual(splitHidden(''), []);
});

test('the pieces put back together are the text as it was sent', () => {
  const text = 'a\u2066b\u2069c\u200Dd\u200Ee'; // the joiner and the LRM mark stay in the text
  const pieces = splitHidden(text);
  assert.equal(pieces.map((p) => p.text).join(''), text);
  assert.deepEqual(pieces.filter((p) => p.hidden).map((p) => p.hidden), ['U+2066', 'U+2069']);
  // the same again: the shared regular expression's position is reset each time
  assert.deepEqual(splitHidden(text), pieces);
});

test('every hidden character has a name for its tooltip', () => {
  for (const cp of [0x200B, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2060, 0x2066, 0x2067, 0x2068, 0x2069, 0xFEFF]) {
    assert.equal(typeof HIDDEN_CHARS[cp], 'string', cp.toString(16));
    assert.equal(splitHidden(String.fromCharCode(cp))[0].hidden, 'U+' + cp.toString(16).toUpperCase());
  }
});

test('a nick always gets the same one of n colours', () => {
  assert.equal(nickColour('alice', 8), nickColour('alice', 8));
  const colours = new Set(['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace', 'heidi'].map((n) => nickColour(n, 8)));
  assert.ok([...colours].every((c) => c >= 0 && c < 8));
  assert.ok(colours.size > 1);
  assert.equal(nickColour('', 8), 0);
});

test('sizes in B, KiB, MiB and GiB', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(1023), '1023 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(5 * 1024 * 1024), '5.0 MiB');
  assert.equal(formatBytes(3 * 1024 ** 3), '3.00 GiB');
  assert.equal(formatBytes(undefined), '–');
});

test('ages in s, min and h', () => {
  assert.equal(formatAge(0.25), '0.3 s');
  assert.equal(formatAge(5.5), '5.5 s'); // tenths below 10 s
  assert.equal(formatAge(42.9), '42 s');
  assert.equal(formatAge(125), '2 min 05 s');
  assert.equal(formatAge(3 * 3600 + 7 * 60), '3 h 07 min');
  assert.equal(formatAge(-1), '–');
  assert.equal(formatAge(NaN), '–');
});

test('a message time is the local hours and minutes', () => {
  const d = new Date(2024, 0, 2, 7, 5, 59);
  assert.equal(formatClock(d.getTime()), '07:05');
});

test('protocols as the connections panel names them', () => {
  assert.equal(describeProtocol({ protocol: 'websocket', path: '/ws', subprotocol: 'portshare.chat.v1' }),
    'WebSocket /ws (portshare.chat.v1)');
  assert.equal(describeProtocol({ protocol: 'WebSocket' }), 'WebSocket');
  assert.equal(describeProtocol({ protocol: 'HTTP/1.1' }), 'HTTP/1.1 keep-alive');
  assert.equal(describeProtocol({ protocol: 'http/1.0' }), 'HTTP/1.0');
  assert.equal(describeProtocol({ protocol: 'h2' }), 'HTTP/2');
  assert.equal(describeProtocol({ protocol: 'portshare-lines' }), 'portshare-lines');
  assert.equal(describeProtocol({}), 'unknown');
});

test('peers: as given, else host:port, IPv6 in brackets', () => {
  assert.equal(peerOf({ peer: 'unix:/run/x' }), 'unix:/run/x');
  assert.equal(peerOf({ host: '127.0.0.1', port: 5 }), '127.0.0.1:5');
  assert.equal(peerOf({ host: '::1', port: 5 }), '[::1]:5');
  assert.equal(peerOf({}), '?');
});
