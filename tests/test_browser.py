"""
The web client as a person uses it: headless Chromium from Debian's packages, driven by
Playwright's sync API, against the real C{twistd -n portshare} process on a loopback port.

Nothing here imports Twisted.  The service is a subprocess started from the installed entry
point (so it can be stopped and started again on the same port), the HTTP API is called with
urllib, and the browser talks to the service over loopback like any browser would (one test
puts a small TCP proxy in between, to drop one tab's connections while the service goes on).
(pytest-twisted calls each test function inside its reactor greenlet; Playwright's sync API
switches to a greenlet of its own and back, which is fine as long as no Deferred is awaited
here.)

The browser is required: without C{/usr/bin/chromium} (or C{$PORTSHARE_CHROMIUM}) these tests
fail, they are never skipped.  Screenshots go to C{$PORTSHARE_SCREENSHOTS}, or to a temporary
directory whose path is printed.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Locator,
    Page,
    expect,
    sync_playwright,
)

import portshare

pytestmark = [pytest.mark.e2e, pytest.mark.browser, pytest.mark.timeout(120)]

CHROMIUM = os.environ.get("PORTSHARE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-proxy-server",
]
# every wait in this module is bounded by this (milliseconds)
WAIT_MS = 10_000
expect.set_options(timeout=WAIT_MS)

BOUND = re.compile(rb"listening on tcp:127\.0\.0\.1:(\d+)\s")
TWISTD = str(Path(sys.executable).with_name("twistd"))
# run the same portshare these tests import, installed or from a checkout
ENV = dict(os.environ, PYTHONPATH=str(Path(portshare.__file__).parent.parent))
# loopback only, never through a proxy from the environment
HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# Installed before the page's own scripts: records what #conn-state showed (the state
# changes are too quick to poll for), CSP violations and any script that should not run.
RECORDER = """
window.__connStates = [];
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push(e.violatedDirective + ' ' + e.blockedURI);
});
new MutationObserver((records) => {
  for (const r of records) {
    if (r.target.id !== 'conn-state') continue;
    const state = r.target.getAttribute('data-state');
    const seen = window.__connStates;
    if (!seen.length || seen[seen.length - 1].state !== state) {
      seen.push({state: state, text: r.target.textContent});
    }
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-state']});
"""

# what a browser says on its console while the server is down, and nothing else is allowed
NETWORK_ERRORS = re.compile(
    r"WebSocket connection to 'ws://127\.0\.0\.1:\d+/ws' failed"
    r"|Failed to load resource: net::ERR_(CONNECTION_(REFUSED|CLOSED|RESET)|EMPTY_RESPONSE"
    r"|SOCKET_NOT_CONNECTED)"
)


class Service:
    """
    The real C{twistd -n portshare} process, on C{tcp:PORT:interface=127.0.0.1}; its log in
    C{directory}.  C{start()} binds an ephemeral port the first time and the same port again
    after C{stop()}.
    """

    def __init__(self, directory: Path, *args: str) -> None:
        self.directory = directory
        self.args = args
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []
        #: the environment twistd runs in (a test may add to its PYTHONPATH)
        self.env = dict(ENV)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> int:
        """Start twistd and wait (bounded) for the address it logs once bound."""
        for _ in range(20):  # the port of a process that just ended may be busy a moment
            log = self.directory / f"twistd-{len(self.logs)}.log"
            self.logs.append(log)
            with log.open("wb") as out:
                self.process = subprocess.Popen(
                    [TWISTD, "-n", "--pidfile=", "portshare", "--port",
                     f"tcp:{self.port}:interface=127.0.0.1", *self.args],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    cwd=self.directory, env=self.env,
                )  # fmt: skip
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                found = BOUND.search(log.read_bytes())
                if found:
                    self.port = int(found.group(1))
                    return self.port
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
            else:
                self.stop()
                raise AssertionError("twistd did not start:\n" + self.output())
            if self.port == 0 or b"Address already in use" not in log.read_bytes():
                raise AssertionError("twistd exited:\n" + self.output())
            time.sleep(0.25)
        raise AssertionError(f"port {self.port} stayed busy:\n" + self.output())

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it; wait (bounded) for the process to end."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)
            raise AssertionError("twistd ignored SIGTERM:\n" + self.output()) from None

    def output(self) -> str:
        return "".join(log.read_text(errors="replace") for log in self.logs)[-4000:]

    def log(self) -> str:
        """The log of the running process, as far as it has been written."""
        return self.logs[-1].read_text(errors="replace")

    def logged(self, text: str) -> str:
        """
        Request C{/healthz?TEXT} and wait (bounded) until its access log line is written:
        whatever the service did before it is in the log then.  @return: the log.
        """
        assert self.get("/healthz?" + text)[0] == 200
        deadline = time.monotonic() + WAIT_MS / 1000
        while text not in (log := self.log()):
            assert time.monotonic() < deadline, f"{text} never logged:\n{self.output()}"
            time.sleep(0.05)
        return log

    def post(self, room: str, nick: str, text: str) -> tuple[int, Any]:
        """POST a message to the HTTP API; @return: (status, JSON body)."""
        request = urllib.request.Request(
            f"{self.url}api/rooms/{room}/messages",
            data=json.dumps({"nick": nick, "text": text}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        return self._call(request)

    def get(self, path: str) -> tuple[int, Any]:
        return self._call(urllib.request.Request(self.url + path.lstrip("/")))

    def _call(self, request: urllib.request.Request) -> tuple[int, Any]:
        try:
            with HTTP.open(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())


class CuttableProxy:
    """
    A loopback TCP proxy in front of a service, in a thread: a tab that loads the page
    through it also opens its WebSocket through it, so C{cut()} drops that tab's connections
    while the service goes on for everyone else.  After C{cut()}, new connections are closed
    at once until C{resume()}.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self.refusing = False
        self.peers: dict[socket.socket, socket.socket] = {}
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="proxy", daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def cut(self) -> None:
        """Drop every connection now and refuse new ones."""
        with self.lock:
            self.refusing = True
            for sock in list(self.peers):
                self._drop(sock)

    def resume(self) -> None:
        with self.lock:
            self.refusing = False

    def close(self) -> None:
        self.cut()
        self.stopped.set()
        self.thread.join(timeout=5)
        self.listener.close()

    def _drop(self, sock: socket.socket) -> None:
        other = self.peers.pop(sock, None)
        for s in (sock, other):
            if s is not None and s.fileno() != -1:
                self.peers.pop(s, None)
                self.selector.unregister(s)
                s.close()

    def _run(self) -> None:
        while not self.stopped.is_set():
            for key, _ in self.selector.select(timeout=0.1):
                with self.lock:
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if sock is self.listener:
                        self._accept()
                    elif sock in self.peers:
                        try:
                            data = sock.recv(65536)
                            if data:
                                self.peers[sock].sendall(data)  # loopback: never blocks long
                        except OSError:
                            data = b""
                        if not data:
                            self._drop(sock)

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        if self.refusing:
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        for sock in (client, upstream):
            sock.setblocking(True)
            sock.settimeout(5)
            self.selector.register(sock, selectors.EVENT_READ)
        self.peers[client], self.peers[upstream] = upstream, client


class Client:
    """One browser tab (in its own browser context) on the web client, and what it logged."""

    def __init__(self, context: BrowserContext, page: Page, name: str) -> None:
        self.context = context
        self.page = page
        self.name = name
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.allowNetworkErrors = False
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on("dialog", self._dialog)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console error: {message.text}")

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    # -- what a person does --

    def setNick(self, nick: str) -> None:
        self.page.fill("#nick-input", nick)
        self.page.press("#nick-input", "Enter")

    def join(self, room: str) -> None:
        self.page.fill("#room-input", room)
        self.page.press("#room-input", "Enter")
        expect(self.tab(room)).to_have_attribute("data-status", "joined")
        expect(self.page.locator("#room-title")).to_have_text("#" + room)

    def say(self, text: str) -> None:
        self.page.fill("#message-input", text)
        self.page.press("#message-input", "Enter")
        expect(self.page.locator("#message-input")).to_have_value("")

    # -- what a person sees --

    def tab(self, room: str) -> Locator:
        return self.page.locator(f'#room-tabs li[data-key="{room}"]')

    def unread(self, room: str) -> Locator:
        return self.tab(room).locator(".unread")

    def message(self, nick: str, text: str) -> Locator:
        """The message shown with exactly this nick and text."""
        return (
            self.page.locator("#messages li.message")
            .filter(
                has=self.page.locator(".nick", has_text=re.compile("^" + re.escape(nick) + "$"))
            )
            .filter(
                has=self.page.locator(".text", has_text=re.compile("^" + re.escape(text) + "$"))
            )
        )

    def presence(self, nick: str, event: str) -> Locator:
        return self.page.locator(f"#messages li.presence-{event}").filter(
            has=self.page.locator(".nick", has_text=re.compile("^" + re.escape(nick) + "$"))
        )

    @property
    def members(self) -> Locator:
        return self.page.locator("#members li")

    @property
    def connState(self) -> Locator:
        return self.page.locator("#conn-state")

    def connStates(self) -> list[dict[str, str]]:
        return self.page.evaluate("window.__connStates")

    def problems(self) -> list[str]:
        """Console errors, page errors, CSP violations and dialogs seen so far."""
        found = list(self.errors)
        if self.allowNetworkErrors:
            found = [e for e in found if not NETWORK_ERRORS.search(e)]
        if not self.page.is_closed():
            found += [f"CSP violation: {v}" for v in self.page.evaluate("window.__csp")]
        return found + [f"dialog: {d}" for d in self.dialogs]

    def screenshot(self, directory: Path, name: str, **kwargs: Any) -> Path:
        path = directory / f"{name}.png"
        self.page.screenshot(path=str(path), **kwargs)
        return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless; every context gets a fresh profile from Playwright."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (these tests need it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $PORTSHARE_SCREENSHOTS, or a temporary directory."""
    where = os.environ.get("PORTSHARE_SCREENSHOTS")
    directory = Path(where) if where else tmp_path_factory.mktemp("screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    print(f"\nbrowser screenshots in {directory}")
    return directory


def runService(directory: Path) -> Iterator[Service]:
    service = Service(directory)
    service.start()
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One twistd for the tests that do not restart it (each uses its own rooms and nicks)."""
    yield from runService(tmp_path_factory.mktemp("twistd"))


@pytest.fixture
def ownService(tmp_path: Path) -> Iterator[Service]:
    """A twistd for this test alone."""
    yield from runService(tmp_path)


@pytest.fixture
def openPage(browser: Browser) -> Iterator[Callable[..., Client]]:
    """
    Open the web client of a service in a new tab with its own storage, set its nick and
    wait until it is online.  At the end, no tab may have logged an error.
    """
    clients: list[Client] = []

    def open_(
        service: Service | CuttableProxy,
        nick: str | None,
        width: int = 1280,
        height: int = 800,
        script: str | None = None,
    ) -> Client:
        context = browser.new_context(viewport={"width": width, "height": height})
        context.add_init_script(RECORDER)
        if script is not None:
            context.add_init_script(script)
        client = Client(context, context.new_page(), nick or "anonymous")
        clients.append(client)
        client.page.goto(service.url)
        expect(client.connState).to_have_attribute("data-state", "online")
        if nick is not None:
            client.setNick(nick)
            expect(client.page.locator("#nick-input")).to_have_value(nick)
        return client

    yield open_
    try:
        problems = {c.name: c.problems() for c in clients}
        assert not any(problems.values()), problems
    finally:
        for client in clients:
            client.context.close()


def test_twoPagesChatInRealTime(service: Service, openPage: Any, screenshots: Path) -> None:
    """
    Two tabs with different nicks in one room see each other's presence and messages as
    they happen, and a message POSTed to the HTTP API appears in both.
    """
    room = "live"
    alice = openPage(service, "alice")
    bob = openPage(service, "bob")
    alice.join(room)
    expect(alice.members).to_have_text(["alice"])
    bob.join(room)

    expect(alice.presence("bob", "join")).to_be_visible()
    for page in (alice, bob):
        expect(page.members).to_have_text(["alice", "bob"])
        expect(page.page.locator("#member-count")).to_have_text("(2)")
    expect(alice.page.locator("#members li.self")).to_have_text("alice")

    alice.say("hi bob")
    expect(bob.message("alice", "hi bob")).to_be_visible()
    expect(alice.message("alice", "hi bob")).to_have_class(re.compile(r"\bown\b"))
    bob.say("hi alice")
    expect(alice.message("bob", "hi alice")).to_be_visible()

    status, body = service.post(room, "curl", "hello from HTTP")
    assert status == 201, body
    for page in (alice, bob):
        expect(page.message("curl", "hello from HTTP")).to_be_visible()
        # in the order they were said, with the offsets the server gave them
        expect(page.page.locator("#messages li.message .text")).to_have_text(
            ["hi bob", "hi alice", "hello from HTTP"]
        )
    offsets = alice.page.locator("#messages li.message").evaluate_all(
        "items => items.map(li => Number(li.dataset.offset))"
    )
    assert offsets == [offsets[0], offsets[0] + 1, offsets[0] + 2]
    alice.screenshot(screenshots, "chat-alice")
    bob.screenshot(screenshots, "chat-bob")

    bob.page.get_by_role("button", name=f"Leave room {room}").click()
    expect(alice.presence("bob", "leave")).to_be_visible()
    expect(alice.members).to_have_text(["alice"])


def test_connectionStateUnreadCountsAndMembers(
    service: Service, openPage: Any, screenshots: Path
) -> None:
    """
    The page shows its connection state (Connecting… before Online), an unread count per
    room that is not on screen, and the room's member list.
    """
    carol = openPage(service, "carol")
    states = carol.connStates()
    assert [s["state"] for s in states] == ["connecting", "online"], states
    assert states[0]["text"].startswith("Connecting"), states
    expect(carol.connState).to_have_text("Online")

    carol.join("unread-a")
    carol.join("unread-b")  # joining switches to the room
    carol.tab("unread-a").locator("button.tab").click()
    expect(carol.page.locator("#room-title")).to_have_text("#unread-a")
    for room in ("unread-a", "unread-b"):
        expect(carol.unread(room)).to_be_hidden()

    dave = openPage(service, "dave")
    dave.join("unread-b")
    dave.say("one")
    dave.say("two")
    status, _ = service.post("unread-b", "erin", "three")
    assert status == 201
    expect(carol.unread("unread-b")).to_have_text("3")
    expect(carol.unread("unread-b")).to_be_visible()
    expect(carol.unread("unread-a")).to_be_hidden()
    expect(carol.tab("unread-b").locator("button.tab")).to_have_attribute(
        "aria-label", re.compile(r"unread-b, 3 unread")
    )
    expect(carol.page).to_have_title("(3) #unread-a \N{EN DASH} portshare")
    # the member list is the room on screen's: only carol is in unread-a
    expect(carol.members).to_have_text(["carol"])
    carol.screenshot(screenshots, "unread")

    carol.tab("unread-b").locator("button.tab").click()
    expect(carol.unread("unread-b")).to_be_hidden()
    expect(carol.page).to_have_title("#unread-b \N{EN DASH} portshare")
    expect(carol.page.locator("#messages li.message .text")).to_have_text(["one", "two", "three"])
    expect(carol.members).to_have_text(["carol", "dave"])
    expect(carol.page.locator("#member-count")).to_have_text("(2)")

    dave.setNick("dave2")  # a nick change is a leave and a join
    expect(carol.members).to_have_text(["carol", "dave2"])
    dave.page.close()  # closing the tab closes its WebSocket: dave2 leaves
    expect(carol.members).to_have_text(["carol"])
    expect(carol.presence("dave2", "leave")).to_be_visible()


def test_connectionsPanelShowsEveryConnectionOnOnePort(
    service: Service, openPage: Any, screenshots: Path
) -> None:
    """
    The connections panel lists both tabs' WebSockets and plain HTTP connections, all on the
    one server port the page came from, each with a client port of its own.
    """
    before = len(service.logged("before-frank-and-grace"))
    frank = openPage(service, "frank")
    grace = openPage(service, "grace")
    for page in (frank, grace):
        page.join("ports")
    # the client ports of the two tabs' WebSockets, as the service logged them
    log = service.logged("frank-and-grace-joined")[before:]
    opened = re.findall(r"tcp4:127\.0\.0\.1:(\d+) opened /ws\b", log)
    assert len(opened) == 2, log
    frank.say("which socket am I on?")
    expect(grace.message("frank", "which socket am I on?")).to_be_visible()
    grace.say("your own, on the same server port as mine")
    assert service.post("ports", "curl", "and this came over plain HTTP, same port")[0] == 201
    expect(frank.message("curl", "and this came over plain HTTP, same port")).to_be_visible()

    frank.page.get_by_role("button", name="Connections").click()
    expect(frank.page.locator("#connections-toggle")).to_have_attribute("aria-expanded", "true")
    panel = frank.page.locator("#connections-panel")
    expect(panel).to_be_visible()
    expect(panel.locator("#connections-listening")).to_have_text(f"tcp:127.0.0.1:{service.port}")
    rows = panel.locator("#connections-table tbody tr")
    websockets = rows.filter(has_text="WebSocket /ws")
    expect(websockets.first).to_be_visible()
    # the server's own list has these tabs' sockets: at least one per open tab
    _, listed = service.get("/api/connections")
    ws = [c for c in listed["connections"] if c["protocol"] == "websocket"]
    assert len(ws) >= 2 and {c["path"] for c in ws} == {"/ws"}, listed
    assert {c["subprotocol"] for c in ws} == {"portshare.chat.v1"}, listed

    def table() -> list[list[str]]:
        return rows.evaluate_all(
            "rows => rows.map(r => Array.from(r.cells, c => c.textContent.trim()))"
        )

    deadline = time.monotonic() + WAIT_MS / 1000
    while True:  # the panel polls every 2 s: wait for a poll that saw both tabs' sockets
        shown = table()
        wsRows = [r for r in shown if r[2].startswith("WebSocket /ws")]
        httpRows = [r for r in shown if r[2].startswith("HTTP/1.1")]
        if (len(wsRows) >= 2 and httpRows) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(wsRows) >= 2 and httpRows, shown
    assert all("(portshare.chat.v1)" in r[2] for r in wsRows), shown
    ports = [r[1] for r in shown]
    assert all(re.fullmatch(r"127\.0\.0\.1:\d+", p) for p in ports), shown
    assert len(set(ports)) == len(ports), f"client ports are not distinct: {shown}"
    # the two tabs' WebSockets are among the rows, shown as WebSockets
    wsPorts = {r[1].rsplit(":", 1)[1] for r in wsRows}
    assert set(opened) <= wsPorts, (opened, shown)
    status = panel.locator("#connections-status")
    expect(status).to_contain_text(re.compile(r"\d+ connections \(\d+ WebSocket, \d+ HTTP\)"))
    frank.screenshot(screenshots, "connections")

    frank.page.get_by_role("button", name="Connections").click()
    expect(panel).to_be_hidden()


HOSTILE_NICKS = ["<img src=x onerror=alert(1)>", "<script>alert(2)</script>"]
HOSTILE_TEXTS = [
    "<script>window.__pwned = 3; alert(3)</script>",
    '<img src=x onerror="window.__pwned = 4; alert(4)">',
    "\u202egnp.exe\u202c reversed, zero\u200bwidth\u200d\ufeff joiners",
    "<b>not bold</b> &amp; &lt;not an entity&gt;",
    "an override that is never closed \u202e and then some",
]


def test_hostileNicksAndTextsAreShownAsText(
    service: Service, openPage: Any, screenshots: Path
) -> None:
    """
    Markup and direction-changing or invisible characters in nicks and messages are shown
    as the text they are: nothing runs, nothing loads, the console stays clean.
    """
    room = "hostile"
    mallory = openPage(service, HOSTILE_NICKS[0])
    victim = openPage(service, "victim")
    mallory.join(room)
    victim.join(room)
    for text in HOSTILE_TEXTS:
        mallory.say(text)
    status, body = service.post(room, HOSTILE_NICKS[1], HOSTILE_TEXTS[0])
    assert status == 201, body

    for page in (mallory, victim):
        expect(page.page.locator("#messages li.message")).to_have_count(len(HOSTILE_TEXTS) + 1)
        shown = page.page.locator("#messages li.message").evaluate_all(
            "items => items.map(li => [li.querySelector('.nick').textContent,"
            " li.querySelector('.text').textContent])"
        )
        assert shown == [[HOSTILE_NICKS[0], t] for t in HOSTILE_TEXTS] + [
            [HOSTILE_NICKS[1], HOSTILE_TEXTS[0]]
        ]
        members = page.members.evaluate_all("items => items.map(li => li.textContent)")
        assert sorted(members) == sorted([HOSTILE_NICKS[0], "victim"])
        # no element was made from the text, no script ran
        assert page.page.locator("#layout img, #layout script, #layout b").count() == 0
        assert page.page.evaluate("window.__pwned") is None
        # user text is isolated, so a right-to-left override cannot reorder the line around it
        isolated = page.page.locator("#messages .text, #messages .nick, #members li")
        assert set(
            isolated.evaluate_all("els => els.map(e => getComputedStyle(e).unicodeBidi)")
        ) == {"isolate"}
        assert set(isolated.evaluate_all("els => els.map(e => e.dir)")) == {"auto"}
        # ... and the line still reads time, nick, text from left to right
        messages = page.page.locator("#messages li.message")
        for li in messages.all():
            x = [li.locator(part).bounding_box()["x"] for part in (".time", ".nick", ".text")]
            assert x == sorted(x), x
        # the invisible characters are shown as marks (the joiner U+200D is left alone), and
        # an override changes nothing around it: "gnp.exe" is not shown as "exe.png"
        marks = messages.evaluate_all(
            "items => items.map(li => Array.from(li.querySelectorAll('.text .hidden-char'),"
            " m => m.dataset.cp))"
        )
        assert marks == [[], [], ["U+202E", "U+202C", "U+200B", "U+FEFF"], [], ["U+202E"], []]
        expect(messages.nth(2).locator(".hidden-char").first).to_be_visible()
        assert readsLeftToRight(messages.nth(2), "gnp.exe")
        assert readsLeftToRight(messages.nth(4), " and then some")
    victim.screenshot(screenshots, "hostile")

    # a nick with a right-to-left override or a zero-width space is refused, visibly
    for nick in ("\u202eevil", "zero\u200bwidth"):
        victim.page.fill("#nick-input", nick)
        victim.page.press("#nick-input", "Enter")
        expect(victim.page.locator("#nick-error")).to_be_visible()
        expect(victim.page.locator("#nick-error")).to_contain_text("printable")
        expect(victim.page.locator("#nick-input")).to_have_attribute("aria-invalid", "true")
        assert victim.page.evaluate("window.portshare.state.nick") == "victim"
        # the server refuses it too
        assert service.post(room, nick, "hi")[0] == 400
    victim.setNick("victim")
    expect(victim.page.locator("#nick-error")).to_be_hidden()

    # nothing tried to load the image that <img src=x> would have asked for
    assert "GET /x " not in service.logged("after-the-hostile-messages")
    for page in (mallory, victim):
        assert page.problems() == []


def readsLeftToRight(message: Locator, piece: str) -> bool:
    """Whether C{piece} of a message's text is laid out in its logical order, left to right."""
    first, last = message.evaluate(
        """(li, piece) => {
          const walker = document.createTreeWalker(li.querySelector('.text'), NodeFilter.SHOW_TEXT);
          let node = walker.nextNode();
          while (node && node.data.indexOf(piece) === -1) node = walker.nextNode();
          const at = node.data.indexOf(piece);
          const range = document.createRange();
          const x = (i) => { range.setStart(node, at + i); range.setEnd(node, at + i + 1);
                             return range.getBoundingClientRect().x; };
          return [x(0), x(piece.length - 1)];
        }""",
        piece,
    )
    return bool(first < last)


def tabOrder(page: Page, presses: int) -> list[str]:
    """What Tab moves the focus to, from where it is (the page's start on a fresh page)."""
    order = []
    for _ in range(presses):
        page.keyboard.press("Tab")
        order.append(
            page.evaluate(
                "(() => { const e = document.activeElement;"
                " if (!e || e === document.body) return '(out of the page)';"
                " return e.id || (e.getAttribute('aria-label') || e.textContent).trim(); })()"
            )
        )
    return order


def test_keyboardOnly(ownService: Service, openPage: Any, screenshots: Path) -> None:
    """
    With the keyboard alone: Tab reaches the nick, the connections toggle, the room, the
    room tabs, the rooms offered to join and the composer in that order; Enter sets, joins and
    sends; every input and button has an accessible name.
    """
    henry = openPage(ownService, None)  # a service of its own: it offers only lobby
    page = henry.page
    expect(page.locator("#known-rooms button")).to_have_count(1)
    assert tabOrder(page, 9) == [
        "nick-input",
        "nick-button",
        "connections-toggle",
        "room-input",
        "join-button",
        "Join lobby",
        "message-input",
        "send-button",
        "(out of the page)",
    ]

    # the last Tab left the page; the next one comes back to its first control
    page.keyboard.press("Tab")
    expect(page.locator("#nick-input")).to_be_focused()
    page.keyboard.press("Control+A")
    page.keyboard.type("henry")
    page.keyboard.press("Enter")
    expect(page.locator("#nick-input")).to_have_value("henry")
    page.keyboard.press("Tab")  # Set
    page.keyboard.press("Tab")  # Connections
    page.keyboard.press("Tab")  # Room
    page.keyboard.type("keys")
    page.keyboard.press("Enter")
    expect(henry.tab("keys")).to_have_attribute("data-status", "joined")
    # joining moves the focus to the message box: type and press Enter
    expect(page.locator("#message-input")).to_be_focused()
    page.keyboard.type("typed, not clicked")
    page.keyboard.press("Enter")
    expect(henry.message("henry", "typed, not clicked")).to_be_visible()
    expect(page.locator("#message-input")).to_have_value("")
    expect(page.locator("#message-input")).to_be_focused()

    # with a room, its tab and its leave button come between the join form and the composer
    for _ in range(4):  # back from the message box: Join lobby, leave button, room tab, Join
        page.keyboard.press("Shift+Tab")
    expect(page.locator("#join-button")).to_be_focused()
    assert tabOrder(page, 5) == [
        "keys",
        "Leave room keys",
        "Join lobby",
        "message-input",
        "send-button",
    ]
    page.keyboard.press("Tab")  # out of the page
    assert tabOrder(page, 10) == [
        "nick-input",
        "nick-button",
        "connections-toggle",
        "room-input",
        "join-button",
        "keys",
        "Leave room keys",
        "Join lobby",
        "message-input",
        "send-button",
    ]
    # every input has a label, every button a name
    for label, id_ in [
        ("Nickname", "nick-input"),
        ("Room", "room-input"),
        ("Message", "message-input"),
        ("API token", "api-token-input"),
    ]:
        assert page.get_by_label(label, exact=True).get_attribute("id") == id_
    unlabelled = page.evaluate(
        "Array.from(document.querySelectorAll('input, select, textarea'))"
        ".filter(e => !(e.labels && e.labels.length && e.labels[0].textContent.trim())"
        " && !e.getAttribute('aria-label')).map(e => e.id || e.outerHTML)"
    )
    assert unlabelled == []
    nameless = page.evaluate(
        "Array.from(document.querySelectorAll('button'))"
        ".filter(b => !(b.getAttribute('aria-label') || b.textContent).trim())"
        ".map(b => b.outerHTML)"
    )
    assert nameless == []
    # the focus is visible where the keyboard put it (Send, after the last Tab)
    expect(page.locator("#send-button")).to_be_focused()
    outline = page.locator("#send-button").evaluate("e => getComputedStyle(e).outlineStyle")
    assert outline == "solid"
    henry.screenshot(screenshots, "keyboard")

    # the other buttons work from the keyboard too: the connections panel, leaving a room
    page.locator("#connections-toggle").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#connections-panel")).to_be_visible()
    expect(page.locator("#connections-toggle")).to_have_attribute("aria-expanded", "true")
    page.keyboard.press("Space")
    expect(page.locator("#connections-panel")).to_be_hidden()
    page.get_by_role("button", name="Leave room keys").focus()
    page.keyboard.press("Enter")
    expect(henry.tab("keys")).to_have_count(0)
    expect(page.locator("#room-input")).to_be_focused()


def test_narrowScreen(
    service: Service, openPage: Any, screenshots: Path, request: pytest.FixtureRequest
) -> None:
    """
    At 375 CSS pixels wide nothing overflows sideways, even with a long nick, a long word,
    the connections panel open and a long reconnecting notice, and the message box and Send
    button are fully on screen.  (The row of room chips may scroll sideways inside the page's
    width, as the connections table does; the row itself must fit.)
    """
    nick = "a-rather-long-nickname-for-a-fon"  # 32 characters, the longest allowed
    proxy = CuttableProxy(service.port)  # to show the reconnecting state on a phone
    request.addfinalizer(proxy.close)
    ivy = openPage(proxy, nick, width=375, height=740)
    ivy.allowNetworkErrors = True
    ivy.join("narrow-room-with-a-fairly-long-name")
    ivy.say("x" * 300)
    ivy.say("short words wrap as usual on a phone-sized screen, without any sideways scrolling")
    status, _ = service.post("narrow-room-with-a-fairly-long-name", "http", "y" * 500)
    assert status == 201
    expect(ivy.page.locator("#messages li.message")).to_have_count(3)

    def overflow() -> dict[str, Any]:
        return ivy.page.evaluate(
            """() => {
              const width = document.documentElement.clientWidth;
              const wide = Array.from(document.querySelectorAll('body *'))
                .filter(e => e.getClientRects().length
                        && !e.closest('.table-wrap, .visually-hidden')
                        && !(e.parentElement && e.parentElement.closest('.room-lists')))
                .filter(e => e.getBoundingClientRect().right > width + 0.5)
                .map(e => e.id || e.className || e.tagName);
              return {width: width, scrollWidth: document.documentElement.scrollWidth,
                      bodyScrollWidth: document.body.scrollWidth, wide: wide};
            }"""
        )

    found = overflow()
    assert found["width"] == 375, found
    assert found["scrollWidth"] <= 375 and found["bodyScrollWidth"] <= 375, found
    assert found["wide"] == [], found
    # the message box and Send stay on screen: at the top of the page with the chat in view,
    # and wherever the keyboard takes them
    ivy.page.evaluate("window.scrollTo(0, 0)")
    for selector in ("#message-input", "#send-button"):
        control = ivy.page.locator(selector)
        expect(control).to_be_in_viewport(ratio=1)
        control.focus()
        expect(control).to_be_in_viewport(ratio=1)
        box = control.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, box
    ivy.page.evaluate("window.scrollTo(0, 0)")
    ivy.screenshot(screenshots, "narrow")

    ivy.page.get_by_role("button", name="Connections").click()
    expect(ivy.page.locator("#connections-table tbody tr").first).to_be_visible()
    found = overflow()
    assert found["scrollWidth"] <= 375 and found["wide"] == [], found
    ivy.page.locator("#connections-panel").scroll_into_view_if_needed()
    ivy.screenshot(screenshots, "narrow-connections")

    proxy.cut()
    expect(ivy.connState).to_have_attribute("data-state", "reconnecting")
    expect(ivy.connState).to_contain_text(re.compile(r"Reconnecting.*attempt"))
    expect(ivy.page.locator("#connections-status")).to_contain_text("Could not load")
    found = overflow()
    assert found["scrollWidth"] <= 375 and found["wide"] == [], found
    ivy.page.evaluate("window.scrollTo(0, 0)")
    ivy.screenshot(screenshots, "narrow-reconnecting")
    proxy.resume()
    expect(ivy.connState).to_have_attribute("data-state", "online", timeout=20_000)


PHONE = {"width": 375, "height": 740}


def assertOnScreen(page: Page, target: Locator | str) -> dict[str, float]:
    """Assert that an element is wholly inside the viewport (and not scrolled out of a pane)."""
    locator = page.locator(target) if isinstance(target, str) else target
    expect(locator).to_be_in_viewport(ratio=1)
    box = locator.bounding_box()
    size = page.viewport_size
    assert box is not None and size is not None, target
    assert box["x"] >= 0 and box["x"] + box["width"] <= size["width"] + 0.5, (target, box)
    assert box["y"] >= 0 and box["y"] + box["height"] <= size["height"] + 0.5, (target, box)
    return box


def pageFits(page: Page) -> dict[str, int]:
    """The document's scroll size against the viewport's: the page itself must not scroll."""
    found: dict[str, int] = page.evaluate(
        "() => ({height: window.innerHeight, width: window.innerWidth,"
        " scrollHeight: Math.max(document.documentElement.scrollHeight,"
        " document.body.scrollHeight),"
        " scrollWidth: Math.max(document.documentElement.scrollWidth,"
        " document.body.scrollWidth), scrollY: window.scrollY})"
    )
    assert found["scrollHeight"] <= found["height"], found
    assert found["scrollWidth"] <= found["width"], found
    assert found["scrollY"] == 0, found
    return found


def test_phoneLayout(service: Service, openPage: Any, screenshots: Path) -> None:
    """
    On a phone (375 x 740) the page is one screen that never scrolls: after fifteen messages the
    newest one and the message box are on screen (the message list scrolls, not the page), the
    header and the room form take well under a third of the height, the server's rooms are
    there to tap, and the members and connections panes open on screen and close again.
    """
    room = "phone"
    pia = openPage(service, "pia", **PHONE)
    page = pia.page
    pia.join(room)
    for i in range(3):
        pia.say(f"from the phone, number {i + 1}")
    for i in range(12):
        text = f"message {i + 4} from the API" + (", long enough to wrap" * (i % 3))
        assert service.post(room, "api", text)[0] == 201
    messages = page.locator("#messages li.message")
    expect(messages).to_have_count(15)
    expect(messages.last.locator(".text")).to_have_text(re.compile("^message 15 from the API"))

    # the page fits the screen; the message list is what scrolls, and it is at its end
    pageFits(page)
    scroll = page.locator("#messages").evaluate(
        "m => ({scrollHeight: m.scrollHeight, clientHeight: m.clientHeight,"
        " fromEnd: m.scrollHeight - m.scrollTop - m.clientHeight})"
    )
    assert scroll["scrollHeight"] > scroll["clientHeight"], scroll
    assert scroll["fromEnd"] < 2, scroll
    newest = assertOnScreen(page, messages.last)
    composer = assertOnScreen(page, "#message-input")
    assertOnScreen(page, "#send-button")
    assert newest["y"] + newest["height"] <= composer["y"], (newest, composer)

    # header, room form and room chips: a modest share of the height
    rooms = page.locator("#layout .rooms").bounding_box()
    assert rooms is not None and rooms["y"] + rooms["height"] < 0.3 * PHONE["height"], rooms
    assertOnScreen(page, "#join-button")
    assertOnScreen(page, pia.tab(room))
    # the server's rooms are one tap away, lobby first (the chip row scrolls sideways)
    lobby = page.locator('#known-rooms button[data-join="lobby"]')
    expect(page.locator("#known-rooms button").first).to_have_attribute("data-join", "lobby")
    assertOnScreen(page, lobby)
    pia.screenshot(screenshots, "phone")

    # a message that arrives while the list is at its end keeps the newest in view
    pia.say("and one more")
    expect(messages).to_have_count(16)
    assertOnScreen(page, messages.last)
    pageFits(page)

    # the members pane: a sheet on screen, and back
    page.get_by_role("button", name="Members (1)").click()
    expect(page.locator("#members-pane")).to_be_visible()
    assertOnScreen(page, "#members-pane")
    expect(pia.members).to_have_text(["pia"])
    expect(page.get_by_role("button", name="Back to the chat")).to_be_focused()
    page.get_by_role("button", name="Back to the chat").click()
    expect(page.locator("#members-pane")).to_be_hidden()
    expect(page.get_by_role("button", name="Members (1)")).to_be_focused()

    # the connections panel opens on screen (not below the chat), with its rows
    page.get_by_role("button", name="Connections").click()
    panel = page.locator("#connections-panel")
    expect(panel).to_be_visible()
    expect(panel.locator("#connections-table tbody tr").first).to_be_visible()
    assertOnScreen(page, panel)
    assertOnScreen(page, "#connections-title")
    assertOnScreen(page, "#connections-status")
    pageFits(page)
    pia.screenshot(screenshots, "phone-connections")
    # Escape closes it as well as the toggle, which stays on screen above the sheet
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    page.get_by_role("button", name="Connections").click()
    expect(panel).to_be_visible()
    assertOnScreen(page, "#connections-toggle")
    page.get_by_role("button", name="Connections").click()
    expect(panel).to_be_hidden()
    assertOnScreen(page, messages.last)
    assertOnScreen(page, "#message-input")


def test_phoneReconnectingSaysWhy(ownService: Service, openPage: Any, screenshots: Path) -> None:
    """
    On a phone, while the service is down, the status is one line in words (no close code such
    as 1006), the server's own reason for closing (1001 "server shutting down") is shown and stays
    shown while the reconnection attempts are refused, the chat stays on screen, and all of it
    clears once the service is back.
    """
    service = ownService
    quinn = openPage(service, "quinn", **PHONE)
    quinn.allowNetworkErrors = True
    page = quinn.page
    quinn.join("down")
    quinn.say("just before the restart")
    detail = page.locator("#conn-detail")
    expect(detail).to_be_hidden()

    service.stop()
    expect(quinn.connState).to_have_attribute("data-state", "reconnecting")
    # a few attempts that found no server: the status says so in one line, in words
    expect(quinn.connState).to_have_attribute(
        "data-attempt", re.compile(r"^([3-9]|\d\d+)$"), timeout=15_000
    )
    header = page.locator(".topbar").inner_text()
    assert not re.search(r"\b[14]\d\d\d\b", header), header
    expect(quinn.connState).to_have_text(re.compile(r"^Reconnecting"))
    status = quinn.connState.evaluate(
        """e => {
          const range = document.createRange();
          range.selectNodeContents(e);
          const tops = new Set(Array.from(range.getClientRects(), r => Math.round(r.top)));
          return {text: e.textContent, lines: tops.size, cut: e.scrollWidth > e.clientWidth};
        }"""
    )
    assert status["lines"] == 1 and not status["cut"], status
    # ... and the server's reason for closing, which those refused attempts have not replaced
    expect(detail).to_have_text("Server shutting down.")
    assertOnScreen(page, detail)
    assertOnScreen(page, quinn.connState)
    assertOnScreen(page, "#reconnect-button")
    assertOnScreen(page, quinn.message("quinn", "just before the restart"))
    assertOnScreen(page, "#message-input")
    pageFits(page)
    quinn.screenshot(screenshots, "phone-reconnecting")

    service.start()
    expect(quinn.connState).to_have_attribute("data-state", "online", timeout=20_000)
    expect(detail).to_be_hidden()
    expect(quinn.tab("down")).to_have_attribute("data-status", "joined")
    pageFits(page)


def test_firstScreenOffersTheServersRooms(
    ownService: Service, openPage: Any, screenshots: Path
) -> None:
    """
    A newcomer's first screen lists the rooms the server has (GET /api/rooms), lobby first even
    before anyone made it, then the busiest, each joined with one click; a room joined leaves
    the list and comes back when left.
    """
    service = ownService
    for i in range(3):
        assert service.post("book-club", "ann", f"chapter {i + 1}")[0] == 201
    olga = openPage(service, "olga")
    olga.join("busy-room")
    newcomer = openPage(service, None)
    page = newcomer.page
    offered = page.locator("#known-rooms button")
    expect(offered).to_have_count(3)
    assert [b.get_attribute("data-join") for b in offered.all()] == [
        "lobby",
        "busy-room",
        "book-club",
    ]
    busy = page.get_by_role("button", name="Join busy-room, 1 person here")
    expect(busy).to_be_visible()
    expect(busy).to_contain_text("1 here")
    expect(page.get_by_role("button", name="Join book-club", exact=True)).to_have_attribute(
        "title", re.compile(r"3 messages so far")
    )
    expect(page.locator("#rooms-empty")).not_to_contain_text("No rooms")
    newcomer.screenshot(screenshots, "first-screen")

    page.get_by_role("button", name="Join book-club", exact=True).click()
    expect(newcomer.tab("book-club")).to_have_attribute("data-status", "joined")
    expect(page.locator("#room-title")).to_have_text("#book-club")
    expect(page.locator("#message-input")).to_be_focused()
    expect(offered).to_have_count(2)
    newcomer.say("hello, club")
    expect(
        newcomer.message(newcomer.page.input_value("#nick-input"), "hello, club")
    ).to_be_visible()

    page.get_by_role("button", name="Join lobby").click()
    expect(newcomer.tab("lobby")).to_have_attribute("data-status", "joined")
    expect(offered).to_have_count(1)
    expect(offered).to_have_attribute("data-join", "busy-room")
    # a room left is offered again, and lobby, now on the server, stays offered too
    page.get_by_role("button", name="Leave room book-club").click()
    page.get_by_role("button", name="Leave room lobby").click()
    expect(offered).to_have_count(3)
    assert offered.first.get_attribute("data-join") == "lobby"


def test_restartOnTheSamePort(ownService: Service, openPage: Any, screenshots: Path) -> None:
    """
    When the service stops, both tabs say they are reconnecting; once it is back on the
    same port they reconnect by themselves, show what was said while they were away and,
    because the in-memory history did not survive the restart, say that recovery was
    incomplete.
    """
    service = ownService
    room = "restart"
    port = service.port
    jack = openPage(service, "jack")
    kate = openPage(service, "kate")
    for page in (jack, kate):
        page.allowNetworkErrors = True
        page.join(room)
    jack.say("before the restart")
    expect(kate.message("jack", "before the restart")).to_be_visible()

    service.stop()
    for page in (jack, kate):
        expect(page.connState).to_have_attribute("data-state", "reconnecting")
        expect(page.connState).to_contain_text("Reconnecting")
        expect(page.tab(room)).to_have_attribute("data-status", "offline")
        # give the back-off time to grow, so the tabs are still waiting after the restart
        expect(page.connState).to_have_attribute(
            "data-attempt", re.compile(r"^([4-9]|\d\d+)$"), timeout=15_000
        )
    jack.screenshot(screenshots, "reconnecting")

    assert service.start() == port
    status, body = service.post(room, "ops", "said while you were away")
    assert status == 201 and body == {"offset": 1}, body
    # were the tabs still away when it was said?  (their back-off makes it all but certain)
    _, listed = service.get("/api/connections")
    away = not any(c["protocol"] == "websocket" for c in listed["connections"])

    for page in (jack, kate):
        expect(page.connState).to_have_attribute("data-state", "online", timeout=20_000)
        expect(page.tab(room)).to_have_attribute("data-status", "joined")
        expect(page.message("ops", "said while you were away")).to_be_visible()
        notice = page.page.locator("#messages li.notice")
        expect(notice).to_have_count(1)
        expect(notice).to_have_text(
            re.compile(r"could not be recovered \(the server.s history was reset\)")
        )
        # the log reads in order: before, the notice, what was said meanwhile
        kinds = page.page.locator("#messages li").evaluate_all(
            "items => items.filter(li => !li.classList.contains('presence'))"
            ".map(li => li.className.split(' ')[0] + ':'"
            " + (li.querySelector('.text, .notice-text').textContent))"
        )
        assert kinds[0] == "message:before the restart", kinds
        assert kinds[1].startswith("notice:Some messages"), kinds
        assert kinds[2] == "message:said while you were away", kinds
        expect(page.members).to_have_text(["jack", "kate"])
        states = [s["state"] for s in page.connStates()]
        assert states == ["connecting", "online", "reconnecting", "online"], states

    # and the chat works again
    kate.say("after the restart")
    expect(jack.message("kate", "after the restart")).to_be_visible()
    jack.screenshot(screenshots, "reconnected")
    if not away:
        print("note: a tab reconnected before the message was POSTed; it arrived live")


def test_droppedConnectionRecoversWhatWasSaidMeanwhile(
    service: Service, openPage: Any, screenshots: Path
) -> None:
    """
    When one tab's connection drops while the service goes on, the tab says it is
    reconnecting, comes back by itself and shows, in order and once each, the messages said
    while it was away (recovered with C{since} in the same epoch: no notice of a loss).
    """
    room = "recover"
    proxy = CuttableProxy(service.port)
    try:
        liam = openPage(proxy, "liam")  # everything of this tab goes through the proxy
        liam.allowNetworkErrors = True
        mia = openPage(service, "mia")
        liam.join(room)
        mia.join(room)
        mia.say("before the drop")
        expect(liam.message("mia", "before the drop")).to_be_visible()

        proxy.cut()
        expect(liam.connState).to_have_attribute("data-state", "reconnecting")
        expect(mia.presence("liam", "leave")).to_be_visible()
        expect(mia.members).to_have_text(["mia"])
        mia.say("said while liam was away")
        status, _ = service.post(room, "curl", "posted while liam was away")
        assert status == 201
        expect(mia.message("curl", "posted while liam was away")).to_be_visible()
        # still away: the proxy refuses him, so none of it can have reached him live
        expect(liam.connState).to_have_attribute("data-state", "reconnecting")
        expect(liam.page.locator("#messages li.message")).to_have_count(1)

        proxy.resume()
        expect(liam.connState).to_have_attribute("data-state", "online", timeout=20_000)
        expect(liam.message("curl", "posted while liam was away")).to_be_visible()
        expect(liam.page.locator("#messages li.message .text")).to_have_text(
            ["before the drop", "said while liam was away", "posted while liam was away"]
        )
        expect(liam.page.locator("#messages li.notice")).to_have_count(0)
        expect(mia.members).to_have_text(["liam", "mia"])
        liam.say("back again")
        expect(mia.message("liam", "back again")).to_be_visible()
        liam.screenshot(screenshots, "recovered")
    finally:
        proxy.close()


def test_sseFallbackWithoutWebSocket(service: Service, openPage: Any, screenshots: Path) -> None:
    """
    In a browser without WebSocket the client falls back to Server-Sent Events and the HTTP
    publish API, shows that it does, and chats both ways with a tab on a WebSocket.
    """
    room = "fallback"
    noWs = openPage(service, "nows", script="delete window.WebSocket;")
    assert noWs.page.evaluate("typeof window.WebSocket") == "undefined"
    transport = noWs.page.locator("#conn-transport")
    expect(transport).to_have_attribute("data-transport", "sse")
    expect(transport).to_have_text("via SSE + HTTP")
    ws = openPage(service, "hasws")
    expect(ws.page.locator("#conn-transport")).to_have_attribute("data-transport", "websocket")
    noWs.join(room)
    expect(noWs.members).to_have_text(["nows"])
    ws.join(room)
    expect(noWs.presence("hasws", "join")).to_be_visible()
    ws.say("to the sse tab")
    expect(noWs.message("hasws", "to the sse tab")).to_be_visible()
    noWs.say("from the sse tab")
    for page in (noWs, ws):
        expect(page.message("nows", "from the sse tab")).to_be_visible()
    status, body = service.post(room, "curl", "over HTTP too")
    assert status == 201, body
    expect(noWs.message("curl", "over HTTP too")).to_be_visible()
    assert noWs.page.evaluate("window.portshare.actions.transport()") == "sse"
    noWs.screenshot(screenshots, "sse-fallback")


# a WebSocket that never opens, as behind a proxy that refuses the Upgrade
FAILING_WEBSOCKET = """
window.WebSocket = function () {
  const ws = this;
  ws.readyState = 0;
  ws.send = () => { throw new Error('not open'); };
  ws.close = () => {};
  setTimeout(() => {
    ws.readyState = 3;
    if (ws.onerror) ws.onerror({});
    if (ws.onclose) ws.onclose({ code: 1006, reason: '' });
  }, 10);
};
"""


def test_sseFallbackWhenWebSocketsNeverOpen(service: Service, openPage: Any) -> None:
    """
    When WebSockets exist but never open (a proxy refusing the Upgrade), the client gives up
    on them after a few attempts and goes on over SSE + HTTP.
    """
    page = openPage(service, "proxied", script=FAILING_WEBSOCKET)
    expect(page.page.locator("#conn-transport")).to_have_attribute("data-transport", "sse")
    page.join("behind-proxy")
    page.say("made it")
    expect(page.message("proxied", "made it")).to_be_visible()


class _Under:
    """The web client's page under a prefix of a service (what openPage opens)."""

    def __init__(self, service: Service, prefix: str) -> None:
        self.url = service.url + prefix.strip("/") + "/"


def test_webClientUnderThePrefixBesideAnApplication(
    ownService: Service, openPage: Any, screenshots: Path, tmp_path: Path
) -> None:
    """
    With a Flask application mounted (--wsgi), the application's page is at / and the web
    client at /chat/: it chats over /chat/ws, falls back to /chat/sse and /chat/api, reads
    the rooms and the connections panel from /chat/api, with no error and no request that
    misses its prefix.
    """
    ownService.stop()
    app = Service(tmp_path, "--wsgi", "tests.apps.flaskapp.app")
    app.start()
    try:
        with HTTP.open(app.url, timeout=5) as response:
            assert b"the flask app" in response.read()
        chat = _Under(app, "/chat")
        ws = openPage(chat, "wsann")
        noWs = openPage(chat, "ssebob", script="delete window.WebSocket;")
        expect(noWs.page.locator("#conn-transport")).to_have_attribute("data-transport", "sse")
        for page in (ws, noWs):
            page.join("beside")
        ws.say("over /chat/ws")
        noWs.say("over /chat/sse and /chat/api")
        for page in (ws, noWs):
            expect(page.message("wsann", "over /chat/ws")).to_be_visible()
            expect(page.message("ssebob", "over /chat/sse and /chat/api")).to_be_visible()
        ws.page.get_by_role("button", name="Connections").click()
        rows = ws.page.locator("#connections-panel #connections-table tbody tr")
        expect(rows.filter(has_text="WebSocket /chat/ws").first).to_be_visible()
        ws.screenshot(screenshots, "beside-an-app")
        log = app.log()
        assert '"GET /chat/api/rooms HTTP/1.1" 200' in log, log[-2000:]
        assert '"GET /api/' not in log and '"GET /ws' not in log and '"GET /sse' not in log
    finally:
        app.stop()


# -- the JavaScript client in pages of your own (issue 14, docs/client.md) -------------------

EXAMPLES = Path(__file__).parent.parent / "examples"
DOCS_CLIENT = Path(__file__).parent.parent / "docs" / "client.md"


class SameOrigin:
    """
    Every request and WebSocket a page makes, recorded, so that a test can show they all went
    to the page's own origin (one port, no second server, no CORS).
    """

    def __init__(self, page: Page) -> None:
        self.requests: list[str] = []
        self.websockets: list[str] = []
        self.cors: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("websocket", lambda ws: self.websockets.append(ws.url))
        page.on("response", self._response)

    def _response(self, response: Any) -> None:
        if "access-control-allow-origin" in response.headers:
            self.cors.append(response.url)

    def check(self, origin: str, websocket: str) -> None:
        assert self.requests and all(u.startswith(origin + "/") for u in self.requests), (
            self.requests
        )
        assert self.websockets == [websocket], self.websockets
        assert self.cors == [], self.cors


def sayAndSee(pages: list[Page], said: dict[str, str], by: dict[str, Page]) -> None:
    """Each nick of C{said} types its text in its page's #text; every page shows them all."""
    for nick, text in said.items():
        by[nick].fill("#text", text)
        by[nick].press("#text", "Enter")
        expect(by[nick].locator("#text")).to_have_value("")
    for page in pages:
        for nick, text in said.items():
            expect(page.locator("#messages li", has_text=f"{nick}: {text}")).to_be_visible()


def openAppPage(browser: Browser, url: str, name: str) -> tuple[Client, SameOrigin]:
    context = browser.new_context(viewport={"width": 1000, "height": 700})
    context.add_init_script(RECORDER)
    page = context.new_page()
    client = Client(context, page, name)
    seen = SameOrigin(page)
    page.goto(url)
    return client, seen


def test_flaskExampleChatsOnItsOwnOrigin(
    browser: Browser, tmp_path: Path, screenshots: Path
) -> None:
    """
    examples/flask under twistd portshare --wsgi: two people sign in with the site's own
    login form (its session cookie), and its page, through /chat/client.js, opens the chat's
    WebSocket on the same origin and port and chats; every request and the WebSocket go to
    that one origin, no response needed CORS, and the site's session cookie went along with
    the upgrade.
    """
    service = Service(tmp_path, "--wsgi", "flaskchat:app")
    service.env["PYTHONPATH"] += os.pathsep + str(EXAMPLES / "flask")
    service.start()
    clients: list[Client] = []
    try:
        origin = service.url.rstrip("/")
        pages = []
        for nick in ("ann", "bob"):
            client, seen = openAppPage(browser, service.url, nick)
            clients.append(client)
            page = client.page
            expect(page).to_have_url(re.compile(r"/login$"))  # the site's own redirect
            page.fill("#nick", nick)
            page.click("button[type=submit]")
            expect(page).to_have_url(origin + "/")
            expect(page.locator("#me")).to_have_text(nick)
            expect(page.locator("#status")).to_have_attribute("data-state", "online")
            expect(page.locator("#chat")).to_have_attribute("data-joined", "lobby")
            cookies = {c["name"]: c for c in client.context.cookies()}
            assert cookies["session"]["httpOnly"], cookies  # the site's, set at login
            pages.append((page, seen))
        (ann, _), (bob, _) = pages
        sayAndSee(
            [page for page, _ in pages],
            {"ann": "hello from a flask page", "bob": "same origin, same port"},
            {"ann": ann, "bob": bob},
        )
        clients[0].screenshot(screenshots, "flask-example")
        ws = f"ws://127.0.0.1:{service.port}/chat/ws"
        for _, seen in pages:
            seen.check(origin, ws)
            assert origin + "/chat/client.js" in seen.requests
        log = service.logged("flask-example-done")
        assert log.count('"POST /login HTTP/1.1" 303') == 2, log[-3000:]
        assert log.count("ChatProtocol#info] tcp4:127.0.0.1:") == 2, log[-3000:]  # opened
        problems = {c.name: c.problems() for c in clients}
        assert not any(problems.values()), problems
    finally:
        for client in clients:
            client.context.close()
        service.stop()


def test_flaskExampleSignsUsersIntoTheChat(
    browser: Browser, tmp_path: Path, screenshots: Path
) -> None:
    """
    examples/flask with users (--auth required): the site's login sets the chat's token
    cookie (a JWT signed with the secret the chat checks), the browser sends it with the
    WebSocket handshake by itself, and every message carries its sender's user; the server
    API lists the two users in the room; a page without the cookie cannot chat.
    """
    secret = tmp_path / "jwt.secret"
    secret.write_bytes(b"k" * 40)
    token = "a-very-secret-api-token"
    service = Service(
        tmp_path,
        "--wsgi", "flaskchat:app",
        "--auth", "required",
        "--jwt-secret-file", str(secret),
        "--api-token", token,
    )  # fmt: skip
    service.env["PYTHONPATH"] += os.pathsep + str(EXAMPLES / "flask")
    service.env["PORTSHARE_JWT_SECRET_FILE"] = str(secret)
    service.start()
    clients: list[Client] = []
    try:
        origin = service.url.rstrip("/")
        pages = {}
        for nick in ("ann", "bob"):
            client, _ = openAppPage(browser, service.url, nick)
            clients.append(client)
            page = client.page
            page.fill("#nick", nick)
            page.click("button[type=submit]")
            expect(page).to_have_url(origin + "/")
            expect(page.locator("#chat")).to_have_attribute("data-joined", "lobby")
            cookies = {c["name"]: c for c in client.context.cookies()}
            assert cookies["portshare_token"]["httpOnly"], cookies
            pages[nick] = page
        pages["ann"].fill("#text", "signed in as ann")
        pages["ann"].press("#text", "Enter")
        said = pages["bob"].locator("#messages li", has_text="signed in as ann")
        expect(said).to_have_attribute("data-user", "user:ann")
        clients[0].screenshot(screenshots, "flask-example-users")
        members = urllib.request.urlopen(
            urllib.request.Request(
                origin + "/chat/api/rooms/lobby/members",
                headers={"Authorization": f"Bearer {token}"},
            ),
            timeout=5,
        )
        listed = json.loads(members.read())["members"]
        assert [(m["user"], m["nick"]) for m in listed] == [
            ("user:ann", "ann"),
            ("user:bob", "bob"),
        ]

        # the same page without the token: the chat refuses it, the site still serves it
        stranger, _ = openAppPage(browser, service.url, "stranger")
        clients.append(stranger)
        stranger.page.fill("#nick", "eve")
        stranger.page.click("button[type=submit]")
        stranger.context.clear_cookies(name="portshare_token")
        stranger.page.reload()
        expect(stranger.page.locator("#status")).not_to_have_attribute("data-state", "online")
        expect(stranger.page.locator("#chat")).not_to_have_attribute("data-joined", "lobby")
    finally:
        for client in clients:
            client.context.close()
        service.stop()


def docsBlocks() -> list[tuple[str, str]]:
    """docs/client.md's fenced blocks: (language, code)."""
    text = DOCS_CLIENT.read_text()
    return re.findall(r"^```(\w+)\n(.*?)^```$", text, re.S | re.M)


def test_docsExamplePage(browser: Browser, tmp_path: Path, screenshots: Path) -> None:
    """
    The example page of docs/client.md, as it is written there (its index.html and page.js
    in a directory served with --static DIR, which replaces the web client but not
    /client.js): two tabs join ?room=docs, see each other in the member list, chat over the
    WebSocket; a third tab without WebSocket falls back to SSE by itself and chats too.
    """
    blocks = docsBlocks()
    html = [code for lang, code in blocks if lang == "html"]
    script = [code for lang, code in blocks if lang == "js" and "document" in code]
    assert len(html) == len(script) == 1, blocks
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text(html[0])
    (site / "page.js").write_text(script[0])
    service = Service(tmp_path, "--static", str(site))
    service.start()
    clients: list[Client] = []
    try:
        url = service.url + "?room=docs"
        opened = []
        for nick, init in (("dora", None), ("dan", None), ("sse-sam", "delete window.WebSocket;")):
            context = browser.new_context(viewport={"width": 900, "height": 700})
            context.add_init_script(RECORDER)
            if init:
                context.add_init_script(init)
            page = context.new_page()
            client = Client(context, page, nick)
            clients.append(client)
            page.goto(url)
            page.fill("#nick", nick)
            page.press("#nick", "Enter")
            expect(page.locator("#state")).to_have_text("online")
            expect(page.locator("#members li", has_text=nick)).to_be_visible()
            opened.append(page)
        dora, _, sam = opened
        expect(dora.locator("#transport")).to_have_text("websocket")
        expect(sam.locator("#transport")).to_have_text("sse")
        for nick in ("dora", "dan", "sse-sam"):
            expect(dora.locator("#members li", has_text=nick)).to_be_visible()
        sayAndSee(
            opened,
            {"dora": "over the websocket", "sse-sam": "over sse and the api"},
            {"dora": dora, "sse-sam": sam},
        )
        clients[0].screenshot(screenshots, "docs-example-page")
        problems = {c.name: c.problems() for c in clients}
        assert not any(problems.values()), problems
    finally:
        for client in clients:
            client.context.close()
        service.stop()
