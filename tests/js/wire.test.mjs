// The web client's wire contract (portshare/static/client/wire.js): limits, validation, parsing.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  LIMITS, SUBPROTOCOL, chatBase, codePointLength, isReply, parseEvent, validateNick,
  validateRoom, validateText,
} from '../../portshare/static/client/wire.js';

test('the subprotocol and limits are the server\'s', () => {
  assert.equal(SUBPROTOCOL, 'portshare.chat.v1');
  assert.deepEqual({ ...LIMITS }, { roomMax: 64, nickMax: 32, textMax: 4096, logMax: 1000 });
  assert.ok(Object.isFrozen(LIMITS));
});

test('the chat\'s paths are under the page\'s directory (--chat-prefix beside an app)', () => {
  assert.equal(chatBase({ pathname: '/' }), '');
  assert.equal(chatBase({ pathname: '/index.html' }), '');
  assert.equal(chatBase({ pathname: '/chat/' }), '/chat');
  assert.equal(chatBase({ pathname: '/chat/index.html' }), '/chat');
  assert.equal(chatBase({ pathname: '/a/b/' }), '/a/b');
  assert.equal(chatBase(undefined), ''); // no page (Node, a worker): the root
});

test('a length is counted in code points, as the server counts it', () => {
  assert.equal(codePointLength('abc'), 3);
  assert.equal(codePointLength('😀'), 1); // two UTF-16 units
  assert.equal(codePointLength(''), 0);
});

test('room names: letters, digits, ".", "_" and "-", 1 to 64 of them', () => {
  assert.equal(validateRoom('lobby'), null);
  assert.equal(validateRoom('a.b_c-9'), null);
  assert.equal(validateRoom('x'.repeat(64)), null);
  assert.match(validateRoom(''), /Enter a room name/);
  assert.match(validateRoom(undefined), /Enter a room name/);
  assert.match(validateRoom('x'.repeat(65)), /at most 64 characters \(this one has 65\)/);
  assert.match(validateRoom('two words'), /no spaces/);
  assert.match(validateRoom('café'), /only contain/);
  assert.match(validateRoom('.'), /cannot be called/); // the server refuses them too
  assert.match(validateRoom('..'), /cannot be called/);
  assert.equal(validateRoom('...'), null);
});

test('nicknames: up to 32 printable code points, ASCII spaces allowed', () => {
  assert.equal(validateNick('alice'), null);
  assert.equal(validateNick('Zoë the 2nd'), null);
  assert.equal(validateNick('😀'.repeat(32)), null);
  assert.match(validateNick(''), /Choose a nickname/);
  assert.match(validateNick('😀'.repeat(33)), /at most 32 characters \(this one has 33\)/);
  assert.match(validateNick('evil\u202Egnp'), /printable/); // a direction override
  assert.match(validateNick('tab\there'), /printable/);
  assert.match(validateNick('no\u00A0break'), /printable/); // a separator that is not " "
});

test('texts: not blank, at most the limit in code points', () => {
  assert.equal(validateText('hi'), null);
  assert.equal(validateText('x'.repeat(4096)), null);
  assert.match(validateText('   '), /Type a message first/);
  assert.match(validateText('x'.repeat(4097)), /at most 4096 characters \(this one has 4097\)/);
  assert.match(validateText('abc', 2), /at most 2 characters/);
});

test('a frame is an event only when it is JSON with a string type', () => {
  assert.deepEqual(parseEvent('{"type":"message","room":"a"}'), { type: 'message', room: 'a' });
  assert.deepEqual(parseEvent('{"type":"from_the_future"}'), { type: 'from_the_future' });
  assert.equal(parseEvent('not json'), null);
  assert.equal(parseEvent('null'), null);
  assert.equal(parseEvent('[1]'), null);
  assert.equal(parseEvent('{"type":1}'), null);
  assert.equal(parseEvent(new ArrayBuffer(2)), null);
});

test('joined, left, ack and error are replies (they carry the command\'s ref)', () => {
  for (const type of ['joined', 'left', 'ack', 'error']) assert.ok(isReply({ type }), type);
  for (const type of ['message', 'presence', 'presence_batch']) assert.ok(!isReply({ type }), type);
});
