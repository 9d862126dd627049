// docs/client.md's code, run: each `js` block as a module of its own against fake sockets, its
// import of '/chat/client.js' (or '/client.js') pointed at portshare/static/client.js. The
// example page (its `html` block and the `js` block of its page.js, which needs a DOM) runs in
// Chromium instead: tests/test_browser.py::test_docsExamplePage.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

import * as client from '../../portshare/static/client.js';
import { Connection } from '../../portshare/static/client/connection.js';
import { fakeWebSocketClass } from './fakes.mjs';

const DOC = readFileSync(new URL('../../docs/client.md', import.meta.url), 'utf8');
const CLIENT = new URL('../../portshare/static/client.js', import.meta.url).href;
const blocks = [...DOC.matchAll(/^```(\w+)\n([\s\S]*?)^```$/gm)].map((m) => ({ lang: m[1], code: m[2] }));
const scripts = blocks.filter((b) => b.lang === 'js');
const inNode = scripts.filter((b) => !/\bdocument\b/.test(b.code));
const dir = mkdtempSync(join(tmpdir(), 'portshare-docs-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Run one block as a module, with fakes for the browser; @return what it did. */
async function run(code, name, globals = {}) {
  const { FakeWebSocket, sockets } = fakeWebSocketClass();
  const logged = [];
  const made = [];
  const start = Connection.prototype.start;
  Connection.prototype.start = function () { made.push(this); return start.call(this); };
  const saved = {};
  const fakes = {
    WebSocket: FakeWebSocket, EventSource: undefined,
    location: { origin: 'http://app.example', protocol: 'http:', host: 'app.example', pathname: '/', search: '' },
    ...globals,
  };
  for (const [key, value] of Object.entries(fakes)) { saved[key] = globalThis[key]; globalThis[key] = value; }
  const log = console.log;
  console.log = (...args) => logged.push(args.join(' '));
  const file = join(dir, name + '.mjs');
  writeFileSync(file, code.replace(/from '\/(chat\/)?client\.js'/g, `from '${CLIENT}'`));
  try {
    await import(pathToFileURL(file).href);
  } finally {
    Connection.prototype.start = start;
  }
  const done = () => {
    made.forEach((conn) => conn.close());
    console.log = log;
    for (const [key, value] of Object.entries(saved)) globalThis[key] = value;
  };
  return { sockets, logged, made, done };
}

test('the blocks: three scripts, one of them the example page\'s, which the browser runs', () => {
  assert.deepEqual(blocks.map((b) => b.lang), ['js', 'html', 'js', 'js']);
  assert.equal(inNode.length, 2);
  const page = scripts.filter((b) => !inNode.includes(b));
  assert.equal(page.length, 1);
  assert.match(page[0].code, /from '\/client\.js'/);
  assert.match(blocks[1].code, /<script type="module" src="page\.js"><\/script>/);
});

test('every block imports only names client.js exports, from client.js', () => {
  for (const { code } of scripts) {
    const imports = [...code.matchAll(/^import \{([^}]+)\} from '([^']+)';$/gm)];
    assert.equal(imports.length, 1, code);
    assert.match(imports[0][2], /^\/(chat\/)?client\.js$/);
    for (const name of imports[0][1].split(',').map((s) => s.trim())) {
      assert.ok(name in client, `docs/client.md imports ${name}, which client.js does not export`);
    }
  }
});

test('"In a few lines": joins lobby when the socket opens, says hello once joined, logs messages', async () => {
  const { sockets, logged, done } = await run(inNode[0].code, 'quick');
  try {
    assert.equal(sockets.length, 1);
    assert.match(sockets[0].url, /^ws:.*\/ws$/);
    assert.equal(sockets[0].protocol, 'portshare.chat.v1');
    sockets[0].open();
    const join = sockets[0].sent[0];
    assert.deepEqual([join.type, join.room, join.nick], ['join', 'lobby', 'alice']);
    sockets[0].deliver({ type: 'joined', room: 'lobby', ref: join.ref, epoch: 'e', offset: 0, members: ['alice'] });
    const say = sockets[0].sent[1];
    assert.deepEqual([say.type, say.room, say.text], ['say', 'lobby', 'hello']);
    sockets[0].deliver({ type: 'message', room: 'lobby', offset: 1, ts: 1, nick: 'alice', text: 'hello' });
    assert.deepEqual(logged, ['alice: hello']);
    sockets[0].deliver({ type: 'joined', room: 'lobby', ref: 99, epoch: 'e', offset: 1, members: ['alice'] });
    assert.equal(sockets[0].sent.length, 2); // { once: true }: one hello
  } finally {
    done();
  }
});

test('"Resuming a room": the saved position is joined with, and kept up to date', async () => {
  const store = new Map([['lobby', JSON.stringify({ since: 7, epoch: 'e1' })]]);
  const sessionStorage = { getItem: (k) => (store.has(k) ? store.get(k) : null), setItem: (k, v) => store.set(k, v) };
  const { sockets, logged, done } = await run(inNode[1].code, 'resume', { sessionStorage });
  try {
    sockets[0].open();
    const join = sockets[0].sent[0];
    assert.deepEqual([join.room, join.since, join.epoch], ['lobby', 7, 'e1']);
    sockets[0].deliver({ type: 'joined', room: 'lobby', ref: join.ref, epoch: 'e1', offset: 9, members: ['alice'], recovered: false });
    assert.deepEqual(logged, ['some messages of lobby are gone']);
    sockets[0].deliver({ type: 'message', room: 'lobby', offset: 9, ts: 1, nick: 'bob', text: 'hi' });
    assert.deepEqual(JSON.parse(store.get('lobby')), { since: 9, epoch: 'e1' });
  } finally {
    done();
  }
});

test('"Resuming a room": with nothing saved, a first join', async () => {
  const sessionStorage = { getItem: () => null, setItem: () => {} };
  const { sockets, done } = await run(inNode[1].code, 'fresh', { sessionStorage });
  try {
    sockets[0].open();
    assert.equal(sockets[0].sent[0].since, undefined);
  } finally {
    done();
  }
});
