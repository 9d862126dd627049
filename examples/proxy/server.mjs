// A backend in another language behind portshare's reverse proxy: Node's own http module, no
// dependencies. portshare (--proxy) sends it every path that is not the chat's; the chat is
// under /chat on the same port and origin, so this page's script opens /chat/ws with no CORS.
//
//   node server.mjs 8000 &                                   # the backend, on 127.0.0.1:8000
//   twistd -n --pidfile= portshare --proxy http://127.0.0.1:8000
//
// then open http://localhost:8080/ (portshare's port; the backend's own is not for browsers).
// The port 0 picks a free one; the line "listening on http://127.0.0.1:PORT" says which.
import { createServer } from 'node:http';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

// a fixed key in production (BACKEND_SECRET_KEY), so that sign-ins outlive a restart
const SECRET = process.env.BACKEND_SECRET_KEY || randomBytes(32).toString('hex');

const validNick = (nick) => nick.length > 0 && [...nick].length <= 32 && !/[\p{C}]/u.test(nick);
const mac = (value) => createHmac('sha256', SECRET).update(value).digest('hex');
const sign = (nick) => { const v = Buffer.from(nick).toString('hex'); return v + '.' + mac(v); };

function signedNick(req) {
  const cookie = (req.headers.cookie || '').split(/;\s*/).find((c) => c.startsWith('nick='));
  if (!cookie) return null;
  const [value, given] = cookie.slice(5).split('.');
  if (!value || !given || given.length !== 64) return null;
  if (!timingSafeEqual(Buffer.from(given), Buffer.from(mac(value)))) return null;
  return Buffer.from(value, 'hex').toString('utf8');
}

const escape = (s) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

const LOGIN = (error) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>Sign in – node + portshare</title></head>
<body><h1>Sign in</h1>${error ? `<p id="error">${error}</p>` : ''}
<form method="post" action="/login"><label for="nick">Nick</label>
<input id="nick" name="nick" maxlength="32" required autofocus>
<button type="submit">Sign in</button></form></body></html>
`;

const PAGE = (nick) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,"><title>#lobby – node + portshare</title></head>
<body>
<p>Signed in as <strong id="me">${escape(nick)}</strong>.</p>
<section id="chat" data-nick="${escape(nick)}" data-room="lobby">
  <h2>#lobby <small id="status" data-state="connecting">connecting…</small></h2>
  <ul id="messages"></ul>
  <form id="say"><input id="text" autocomplete="off"><button>Say</button></form>
</section>
<script type="module">
  import { connect } from '/chat/client.js';
  const box = document.getElementById('chat');
  const chat = connect({ nick: box.dataset.nick });
  chat.join(box.dataset.room);
  chat.addEventListener('statechange', () => { document.getElementById('status').dataset.state = chat.state.status; });
  chat.addEventListener('message', (e) => {
    const li = document.createElement('li');
    li.textContent = e.detail.msg.nick + ': ' + e.detail.msg.text;
    document.getElementById('messages').append(li);
  });
  document.getElementById('say').addEventListener('submit', (e) => {
    e.preventDefault();
    const input = document.getElementById('text');
    if (input.value.trim() && chat.say(box.dataset.room, input.value)) input.value = '';
  });
</script>
</body></html>
`;

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', ...headers });
  res.end(body);
}

const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://backend');
  if (req.method === 'GET' && url.pathname === '/') {
    const nick = signedNick(req);
    if (nick === null) return send(res, 303, '', { location: '/login' });
    return send(res, 200, PAGE(nick));
  }
  if (req.method === 'GET' && url.pathname === '/login') return send(res, 200, LOGIN(''));
  if (req.method === 'POST' && url.pathname === '/login') {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => {
      body += chunk;
      if (body.length > 10000) req.destroy(); // a sign-in form is small
    });
    req.on('end', () => {
      const nick = (new URLSearchParams(body).get('nick') || '').trim();
      if (!validNick(nick)) return send(res, 400, LOGIN('A nick is 1 to 32 printable characters.'));
      send(res, 303, '', {
        location: '/',
        'set-cookie': `nick=${sign(nick)}; Path=/; HttpOnly; SameSite=Lax`,
      });
    });
    return undefined;
  }
  if (req.method === 'GET' && url.pathname === '/api/me') {
    // what the backend was told by the proxy in front of it
    res.writeHead(200, { 'content-type': 'application/json' });
    return res.end(JSON.stringify({
      nick: signedNick(req),
      forwardedFor: req.headers['x-forwarded-for'] || null,
      forwardedHost: req.headers['x-forwarded-host'] || null,
    }));
  }
  return send(res, 404, '<p>not found</p>');
});

const port = Number(process.argv[2] || process.env.PORT || 8000);
server.listen(port, '127.0.0.1', () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0)); // nothing to finish: every answer is immediate
