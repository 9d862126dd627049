// How the web client's modules fit together (portshare/static/*.js, client/*.js and index.html).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join, normalize } from 'node:path';

const STATIC = fileURLToPath(new URL('../../portshare/static/', import.meta.url));
// every module, by its path under static/ ('main.js', 'client/connection.js')
const MODULES = readdirSync(STATIC, { recursive: true }).filter((f) => f.endsWith('.js')).sort();
// the internal modules behind client.js: only client.js may be imported by a page of yours
const INTERNAL = MODULES.filter((f) => f.startsWith('client/'));
const source = (name) => readFileSync(join(STATIC, name), 'utf8');
const html = readFileSync(join(STATIC, 'index.html'), 'utf8');

/** The code without its comments (block comments, and line comments after a blank). */
function code(name) {
  return source(name).replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|\s)\/\/.*$/gm, '$1');
}

/** Where an import of `spec` in module `name` leads, as a path under static/. */
const resolve = (name, spec) => normalize(join(dirname(name), spec));

/** The specifiers a module imports from. */
function importsOf(name) {
  return [...code(name).matchAll(/^\s*import\s[^'"]*?from\s+['"]([^'"]+)['"]/gm)].map((m) => m[1]);
}

/** `name` and every module it imports, directly or not. */
function closure(name, seen = new Set()) {
  if (seen.has(name)) return seen;
  seen.add(name);
  importsOf(name).forEach((spec) => closure(resolve(name, spec), seen));
  return seen;
}

test('every import is a module of the client, by a relative path', () => {
  assert.ok(MODULES.length > 5, MODULES.join());
  for (const name of MODULES) {
    for (const spec of importsOf(name)) {
      assert.match(spec, /^\.\/(client\/)?[a-z]+\.js$/, `${name} imports ${spec}`);
      assert.ok(existsSync(join(STATIC, resolve(name, spec))), `${name} imports ${spec}, which is missing`);
    }
  }
});

test('index.html runs main.js as a module, and no inline script or style (CSP)', () => {
  const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
  assert.equal(scripts.length, 1);
  assert.match(scripts[0][1], /\btype="module"/);
  assert.match(scripts[0][1], /\bsrc="main\.js"/);
  assert.equal(scripts[0][2].trim(), '');
  assert.doesNotMatch(html, /<style\b|\sstyle=|\son[a-z]+=/i);
});

test('every module is in use, and index.html preloads exactly the ones main.js imports', () => {
  const used = closure('main.js');
  assert.deepEqual([...used].sort(), MODULES);
  const preloaded = [...html.matchAll(/<link rel="modulepreload" href="([^"]+)">/g)].map((m) => m[1]);
  assert.deepEqual([...preloaded].sort(), MODULES.filter((m) => m !== 'main.js'));
});

test('the connection and what it imports never touch the page', () => {
  const dom = /\b(document|window|localStorage|sessionStorage|navigator)\b/;
  for (const name of closure('client.js')) assert.doesNotMatch(code(name), dom, name);
});

test('client.js stands alone: it and what it imports are client.js and client/, nothing of the page', () => {
  // --static DIR replaces the web client, and the server serves client.js and client/ still:
  // an import of anything else would be DIR's file, or missing.
  assert.deepEqual([...closure('client.js')].sort(), ['client.js', ...INTERNAL].sort());
  assert.deepEqual(INTERNAL.sort(), ['client/connection.js', 'client/reconnect.js', 'client/rooms.js', 'client/sse.js', 'client/wire.js']);
});

test('the internal modules never import from the page, and go through client.js to be used', () => {
  for (const name of INTERNAL) {
    for (const spec of importsOf(name)) assert.ok(resolve(name, spec).startsWith('client/'), `${name} imports ${spec}`);
  }
  // the web client's page takes its Connection from the public module, as a page of yours does
  assert.ok(importsOf('main.js').includes('./client.js'));
  assert.ok(!importsOf('main.js').includes('./client/connection.js'));
});

test('the pure modules use no timers and no I/O', () => {
  for (const name of ['client/wire.js', 'client/reconnect.js', 'client/rooms.js', 'format.js']) {
    assert.doesNotMatch(code(name), /\b(document|window|globalThis|setTimeout|setInterval|fetch)\b|new\s+(WebSocket|EventSource)/, name);
    assert.deepEqual(importsOf(name).filter((s) => !['./wire.js'].includes(s)), [], name);
  }
});

test('every module but main.js can be imported without a page', async () => {
  for (const name of MODULES.filter((m) => m !== 'main.js')) {
    const module = await import(new URL(name, 'file://' + STATIC).href);
    assert.ok(Object.keys(module).length > 0, name);
  }
});
