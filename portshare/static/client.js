/*
 * portshare's JavaScript client: the public module, served by portshare at
 * `<chat prefix>/client.js` (`/client.js`, or `/chat/client.js` beside a mounted application),
 * also when `--static DIR` replaces the web client. No build step, no dependencies: a page
 * imports it as it is.
 *
 *   import { connect } from '/chat/client.js';
 *   const chat = connect({ nick: 'alice' });
 *   chat.addEventListener('message', (e) => console.log(e.detail.msg.nick, e.detail.msg.text));
 *   chat.join('lobby');
 *   chat.addEventListener('joined', () => chat.say('lobby', 'hello'), { once: true });
 *
 * Everything else under `client/` is internal (it may change between versions); this module's
 * names are the API, documented in docs/client.md. The built-in web client uses this module
 * too (main.js).
 *
 * Where the chat is: unless told otherwise (`base`, `url`), a connection talks to the server
 * and the prefix this module was loaded from (its own URL, `import.meta.url`): the page that
 * imports `/chat/client.js` gets `/chat/ws`, `/chat/sse` and `/chat/api` whatever its own
 * path is. Same origin as the page: no CORS, no second port.
 */

import { Connection as BaseConnection, ConnectionEvent } from './client/connection.js';
import { LIMITS, SUBPROTOCOL, VERSION, validateNick, validateRoom, validateText } from './client/wire.js';
import { describeClose } from './client/reconnect.js';

export { ConnectionEvent, LIMITS, SUBPROTOCOL, VERSION, describeClose, validateNick, validateRoom, validateText };

/**
 * Where the chat is, from the URL of this module and the page's location: `base`, the path
 * (or, when the module came from another origin, the absolute URL) the chat's `ws`, `sse` and
 * `api` are under, without a trailing slash; `url`, the WebSocket's URL.
 * @param {string} moduleUrl this module's URL (`import.meta.url`)
 * @param {{origin?: string}} [location] the page's location (null: none, as in a worker)
 * @return {{base: string, url: string}}
 */
export function chatHome(moduleUrl, location) {
  const dir = new URL('.', moduleUrl); // http://host:port/chat/
  const path = dir.pathname.replace(/\/+$/, ''); // '/chat', or '' at the root
  const sameOrigin = !!location && location.origin === dir.origin;
  const scheme = dir.protocol === 'https:' ? 'wss:' : 'ws:';
  return {
    base: sameOrigin ? path : dir.origin + path,
    url: scheme + '//' + dir.host + path + '/ws',
  };
}

/**
 * `options` with `base` and `url` filled in from where this module was loaded (a `base` of
 * the caller's own, without `url`, keeps the page's host: client/connection.js's default).
 */
function withHome(options) {
  const o = Object.assign({}, options || {});
  if (!('base' in o)) {
    const home = chatHome(import.meta.url, globalThis.location || null);
    o.base = home.base;
    if (!o.url) o.url = home.url;
  }
  return o;
}

/**
 * A connection to the chat (an EventTarget), not started yet: add listeners, then start().
 * Options and events: see docs/client.md (and client/connection.js); by default it talks to
 * the chat this module was served by.
 */
export class Connection extends BaseConnection {
  /** @param {object} [options] see docs/client.md */
  constructor(options) {
    super(withHome(options));
  }
}

/**
 * A Connection, started: its first socket is being opened.
 * @param {object} [options] see docs/client.md
 * @return {Connection}
 */
export function connect(options) {
  const conn = new Connection(options);
  conn.start();
  return conn;
}
