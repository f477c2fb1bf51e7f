"""Notifications through real components: an aiosmtpd server (STARTTLS with a certificate made
here, login required) receives the email; a local HTTP server receives the Slack and webhook
calls and checks the HMAC signature. The outbox sends a notice once per finding and state, retries
transient failures, and delivers at least once across a crash."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message as EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tieout.config import Config, parse_config
from tieout.errors import ConfigError
from tieout.notify import NOTIFIERS
from tieout.notify.outbox import channel_settings, dispatch, notice_plan
from tieout.notify.webhook import SIGNATURE_HEADER
from tieout.routing import triage
from tieout.store import Store

from .test_cli import _plain_wide_console, cli  # noqa: F401  (autouse fixture)
from .test_store import finding, record

SECRET = "whsec_test"


# --- a local HTTP receiver -----------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answers to give first, then 200

    def signed_ok(self, r: Received) -> bool:
        expected = "sha256=" + hmac.new(SECRET.encode(), r.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(r.headers.get(SIGNATURE_HEADER, ""), expected)


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
            status = receiver.statuses.pop(0) if receiver.statuses else 200
            self.send_response(status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


# --- a local SMTP server with STARTTLS and login -------------------------------------------------


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class SmtpServer:
    port: int
    ca_file: Path
    messages: list[tuple[Envelope, bool]] = field(default_factory=list)  # (envelope, over TLS)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpServer]:
    cert, key = _self_signed(tmp_path)
    server = SmtpServer(_free_port(), cert)

    class Handler:
        async def handle_DATA(self, _server: SMTP, session: Session, envelope: Envelope) -> str:
            server.messages.append((envelope, session.ssl is not None))
            return "250 OK"

    def authenticator(_server: SMTP, _session: Session, _envelope: Envelope, _mechanism: str, auth: Any
                      ) -> AuthResult:
        ok = isinstance(auth, LoginPassword) and auth.login == b"tieout" and auth.password == b"s3cret"
        return AuthResult(success=ok, handled=False)  # not handled: the server answers 535

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(Handler(), hostname="127.0.0.1", port=server.port, tls_context=context,
                            require_starttls=True, authenticator=authenticator, auth_require_tls=True)
    try:
        controller.start()
    except Exception as exc:  # a fixture that cannot start fails with the reason
        pytest.fail(f"aiosmtpd could not start on 127.0.0.1:{server.port}: {exc}", pytrace=False)
    try:
        yield server
    finally:
        controller.stop()


# --- helpers -------------------------------------------------------------------------------------


def _config(tmp_path: Path, channels: str) -> Config:
    text = "routing:\n  default_owner: ann\n  rules:\n    - {category: price_mismatch, owner: bob}\n"
    return parse_config(text + "notify:\n  channels:\n" + channels, tmp_path / "tieout.yaml")


def _queue(store: Store, cfg: Config, findings: list[Any]) -> int:
    return record(store, findings, triage=triage(cfg.priority, cfg.routing, {}),
                  notices=notice_plan(cfg.notify)).notices_queued


def _webhook(url: str, attempts: int = 3) -> str:
    return (f"    - {{name: hook, type: webhook, settings: {{url: '{url}/hook', secret: {SECRET}, "
            f"attempts: {attempts}, backoff_seconds: 0}}}}\n")


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'n.db'}")
    try:
        yield s
    finally:
        s.close()


FINDINGS = [finding("BIG", 20_000_000), finding("MID", 300_000), finding("SMALL", 500),
            finding("INV-9/1", 2500, category="price_mismatch", customer="C9")]


# --- tests ---------------------------------------------------------------------------------------


def test_webhook_digest_per_owner_signed_ranked_and_sent_once(tmp_path: Path, http: HttpReceiver,
                                                              sqlite_store: Store) -> None:
    cfg = _config(tmp_path, _webhook(http.url))
    assert _queue(sqlite_store, cfg, FINDINGS) == 4
    report = dispatch(cfg, sqlite_store)
    assert (report.messages_sent, report.notices_sent, report.errors) == (3, 4, [])
    assert all(http.signed_ok(r) for r in http.requests)
    bodies = [r.json() for r in http.requests]
    immediate = [b for b in bodies if b["mode"] == "immediate"]
    digests = {b["owner"]: b for b in bodies if b["mode"] == "digest"}
    assert [b["findings"][0]["finding_id"] for b in immediate] == [FINDINGS[0].finding_id]  # critical: at once
    assert [f["finding_id"] for f in digests["ann"]["findings"]] == [FINDINGS[1].finding_id, FINDINGS[2].finding_id]
    assert [f["finding_id"] for f in digests["bob"]["findings"]] == [FINDINGS[3].finding_id]
    assert digests["ann"]["dedupe_keys"][0].startswith(f"{FINDINGS[1].finding_id}:open:hook:run1")
    assert digests["ann"]["findings"][0]["priority_reason"] == "USD 3,000.00 at risk ≥ USD 1,000.00"
    # never twice: dispatch again, and run again with the same findings
    assert dispatch(cfg, sqlite_store).messages_sent == 0
    assert _queue(sqlite_store, cfg, FINDINGS) == 0
    assert dispatch(cfg, sqlite_store).messages_sent == 0
    assert len(http.requests) == 3
    notified = [json.loads(e.payload) for e in sqlite_store.audit_entries() if e.kind == "notification"]
    assert len(notified) == 4 and all(n["ok"] for n in notified)


def test_a_tampered_body_fails_the_signature(http: HttpReceiver) -> None:
    r = Received("/hook", {SIGNATURE_HEADER: "sha256=" + "0" * 64}, b"{}")
    assert not http.signed_ok(r)


def test_webhook_retries_transient_failures_with_backoff(tmp_path: Path, http: HttpReceiver,
                                                         sqlite_store: Store) -> None:
    cfg = _config(tmp_path, _webhook(http.url, attempts=3))
    _queue(sqlite_store, cfg, FINDINGS[:1])
    http.statuses = [503, 429]  # two transient failures, then 200
    report = dispatch(cfg, sqlite_store)
    assert report.notices_sent == 1 and len(http.requests) == 3
    assert http.requests[0].body == http.requests[2].body


def test_a_terminal_failure_is_recorded_and_sent_later(tmp_path: Path, http: HttpReceiver,
                                                       sqlite_store: Store) -> None:
    cfg = _config(tmp_path, _webhook(http.url, attempts=3))
    _queue(sqlite_store, cfg, FINDINGS[:1])
    http.statuses = [403]
    report = dispatch(cfg, sqlite_store)
    assert report.notices_failed == 1 and len(http.requests) == 1  # a 4xx is not retried
    assert report.errors == [f"channel hook: {http.url}/hook: HTTP 403 Forbidden (not retried)"]
    [row] = sqlite_store.outbox()
    assert (row.status, row.attempts, row.last_error) == ("failed", 1, report.errors[0].removeprefix("channel hook: "))
    assert dispatch(cfg, sqlite_store).notices_sent == 1  # the next dispatch sends it
    assert sqlite_store.outbox() == []


def test_a_crash_between_sending_and_marking_delivers_again_with_the_same_key(
        tmp_path: Path, http: HttpReceiver, sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config(tmp_path, _webhook(http.url))
    _queue(sqlite_store, cfg, FINDINGS[:1])

    def crash(*_args: Any, **_kw: Any) -> None:
        raise KeyboardInterrupt  # the process dies after the POST, before the outbox row is marked

    with monkeypatch.context() as m:
        m.setattr(Store, "record_notifications", crash)
        with pytest.raises(KeyboardInterrupt):
            dispatch(cfg, sqlite_store)
    assert dispatch(cfg, sqlite_store).notices_sent == 1
    first, second = (r.json() for r in http.requests)
    assert first["dedupe_keys"] == second["dedupe_keys"]  # the receiver drops the repeat by its key


def test_slack_block_kit(tmp_path: Path, http: HttpReceiver, sqlite_store: Store) -> None:
    cfg = _config(tmp_path, f"    - {{name: chat, type: slack, settings: {{webhook_url: '{http.url}/slack', "
                            "backoff_seconds: 0}}\n")
    _queue(sqlite_store, cfg, FINDINGS)
    assert dispatch(cfg, sqlite_store).messages_sent == 3
    bodies = [r.json() for r in http.requests]
    assert all(r.path == "/slack" for r in http.requests)
    digest = next(b for b in bodies if b["text"] == "tieout: 2 findings for ann")
    assert [b["type"] for b in digest["blocks"]] == ["header", "section", "section", "context"]
    assert digest["blocks"][1]["text"]["text"].startswith(f"[medium] {FINDINGS[1].finding_id} amount_mismatch "
                                                          "USD 3,000.00")
    assert "dedupe: " in digest["blocks"][-1]["elements"][0]["text"]


def _email_channel(smtp: SmtpServer, **over: Any) -> str:
    settings = {"host": "127.0.0.1", "port": smtp.port, "username": "tieout", "password": "s3cret",
                "from_addr": "tieout@example.com", "to": ["ops@example.com"],
                "owner_addresses": {"bob": "bob@example.com"}, "ca_file": str(smtp.ca_file), **over}
    return f"    - {{name: mail, type: email, digest: true, settings: {json.dumps(settings)}}}\n"


def test_email_over_starttls_with_login_html_and_text(tmp_path: Path, smtp: SmtpServer,
                                                      sqlite_store: Store) -> None:
    cfg = _config(tmp_path, _email_channel(smtp))
    _queue(sqlite_store, cfg, FINDINGS)
    report = dispatch(cfg, sqlite_store)
    assert report.errors == [] and report.messages_sent == 3
    assert all(tls for _, tls in smtp.messages)
    by_to = {tuple(env.rcpt_tos): env for env, _ in smtp.messages}
    bob = by_to[("bob@example.com",)]
    msg: EmailMessage = message_from_bytes(bob.content if isinstance(bob.content, bytes) else b"")
    assert msg["Subject"] == "tieout: 1 finding for bob"
    assert msg["X-Tieout-Dedupe-Keys"].startswith(FINDINGS[3].finding_id)
    parts = {p.get_content_type(): p.get_payload(decode=True) for p in msg.walk() if not p.is_multipart()}
    assert set(parts) == {"text/plain", "text/html"}
    assert b"INV-9/1 differs" in parts["text/plain"] and b"<table" in parts["text/html"]
    assert ("ops@example.com",) in by_to


def test_wrong_password_and_unreachable_server_are_clear_errors(tmp_path: Path, smtp: SmtpServer,
                                                                sqlite_store: Store) -> None:
    cfg = _config(tmp_path, _email_channel(smtp, password="wrong"))
    _queue(sqlite_store, cfg, FINDINGS[:1])
    report = dispatch(cfg, sqlite_store)
    assert report.errors == [f"channel mail: SMTP server 127.0.0.1:{smtp.port}: login refused for 'tieout': 535"]
    port = _free_port()
    (tmp_path / "tieout.yaml").write_text(
        "store: sqlite:///n.db\nnotify:\n  channels:\n" + _email_channel(smtp, port=port, timeout_seconds=5))
    r = cli("notify", "send", "-c", tmp_path / "tieout.yaml")
    assert r.code == 2
    assert r.err.splitlines()[0].startswith(f"channel mail: SMTP server 127.0.0.1:{port}: cannot deliver:")
    assert "sent 0 messages (0 notices); 1 notices failed" in r.out
    [row] = sqlite_store.outbox()
    assert row.status == "failed" and row.attempts == 2
    assert smtp.messages == []


@pytest.mark.parametrize(("channel", "message"), [
    ("    - {name: x, type: pager, settings: {}}\n",
     "tieout.yaml:7: notify.channels.0.type: unknown notifier 'pager' (one of email, slack, webhook)"),
    ("    - {name: x, type: webhook, settings: {url: 'http://127.0.0.1:1/', secret: s, retries: 3}}\n",
     "tieout.yaml:7: notify.channels.0.settings.retries: unknown setting"),
    ("    - {name: x, type: email, settings: {host: h}}\n",
     "tieout.yaml:7: notify.channels.0.settings.from_addr: Field required"),
])
def test_malformed_channels_are_config_errors(tmp_path: Path, channel: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        channel_settings(_config(tmp_path, channel))
    assert str(err.value) == message


def test_the_registry_documents_every_setting() -> None:
    assert set(NOTIFIERS) == {"email", "slack", "webhook"}
    for n in NOTIFIERS.values():
        assert n.doc
        assert all(f.description for f in n.settings.model_fields.values()), n.name
    r = cli("notify", "channels")
    assert r.code == 0 and all(name in r.out for name in NOTIFIERS)


def test_a_run_sends_its_notices_and_reports_an_unreachable_server(tmp_path: Path, http: HttpReceiver) -> None:
    from .test_cli import write_workspace

    port = _free_port()
    extra = ("notify:\n  channels:\n" + _webhook(http.url) +
             f"    - {{name: mail, type: email, settings: {{host: 127.0.0.1, port: {port}, from_addr: t@example.com,"
             " to: [ops@example.com]}}\n")
    config = write_workspace(tmp_path / "ws", extra=extra)
    r = cli("run", "-c", config, "--fail-on", "never")
    assert r.code == 0, r.err
    assert "notices: 2 sent in 1 messages, 2 failed (kept queued: `tieout notify send` retries)" in r.out
    assert r.err.splitlines()[0].startswith(f"channel mail: SMTP server 127.0.0.1:{port}: cannot deliver:")
    assert len(http.requests) == 1 and http.signed_ok(http.requests[0])
    again = cli("run", "-c", config, "--fail-on", "never")  # same findings: nothing new to say on the webhook
    assert len(http.requests) == 1
    assert "notices: 0 sent in 0 messages, 2 failed" in again.out  # the mail is retried, still unreachable


def test_an_escalation_is_notified_to_the_second_owner_once(tmp_path: Path, http: HttpReceiver,
                                                            sqlite_store: Store) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from tieout.store import FindingRow

    cfg = parse_config("routing:\n  default_owner: ann\n  escalation: {after_days: 2, to: boss}\n"
                       "notify:\n  channels:\n" + _webhook(http.url), tmp_path / "tieout.yaml")
    f = FINDINGS[1]
    assert _queue(sqlite_store, cfg, [f]) == 1
    dispatch(cfg, sqlite_store)
    with sqlite_store.engine.begin() as conn:
        conn.execute(update(FindingRow).values(first_seen_at=datetime.now(UTC) - timedelta(days=3)))
    assert _queue(sqlite_store, cfg, [f]) == 1
    assert _queue(sqlite_store, cfg, [f]) == 0
    dispatch(cfg, sqlite_store)
    last = http.requests[-1].json()
    assert (last["owner"], last["findings"][0]["state"]) == ("boss", "escalated")
    assert len(http.requests) == 2


def test_an_assignment_is_sent_to_the_new_owner(tmp_path: Path, http: HttpReceiver) -> None:
    from .test_cli import write_workspace

    extra = "notify:\n  channels:\n" + _webhook(http.url)
    config = write_workspace(tmp_path / "ws", extra=extra)
    assert cli("run", "-c", config, "--fail-on", "never").code == 0
    found = len(http.requests)
    store = Store(parse_config(config.read_text(encoding="utf-8"), config).store_url())
    try:
        fid = store.findings(status=["open"])[0].finding_id
    finally:
        store.close()
    r = cli("findings", "assign", fid, "--owner", "dana", "-m", "yours", "--actor", "ann", "-c", config)
    assert r.code == 0, r.err
    assert "notices: 1 sent in 1 messages, 0 failed" in r.out
    assert len(http.requests) == found + 1 and http.signed_ok(http.requests[-1])
    sent = http.requests[-1].json()
    assert sent["owner"] == "dana" and [(f["finding_id"], f["state"]) for f in sent["findings"]] == [(fid, "assigned")]
    # An acknowledgement is not news for anyone; a second assignment is.
    assert cli("findings", "ack", fid, "-c", config).code == 0
    assert len(http.requests) == found + 1
    assert cli("findings", "assign", fid, "--owner", "erin", "-c", config).code == 0
    assert http.requests[-1].json()["owner"] == "erin" and len(http.requests) == found + 2
