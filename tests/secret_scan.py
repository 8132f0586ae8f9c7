"""The suite's secret scan: at the end of every test session, no secret may be in any log.

Scanned: every log file the session's tests produced under pytest's base temporary folder
(profiles' ``logs/chimera.log*``, the identity provider's ``serve*.log``, any ``*.log``), and every
log record emitted in this process at any level (a root handler sees them as caplog does).
Looked for: PEM private key blocks, JWT-shaped tokens, invite codes (``chimera-invite:``), the
test api_hash, the passphrases and 2FA passwords the tests use, and every value registered with
:func:`register_secret` (the Telegram login codes the emulator issues and the enrollment codes
the identity provider sends are registered automatically, by wrapping the functions that make
them: the wrappers only observe, they change nothing). A hit fails the session (exit status 1)
and lists file and line.

Run the whole suite with ``CHIMERA_DEBUG_LOG=1 --log-level=DEBUG`` to scan DEBUG records too.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PATTERNS: dict[str, re.Pattern[str]] = {
    "PEM private key": re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY-----"),
    "JWT-shaped token": re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
    "invite code": re.compile(r"chimera-invite:[A-Za-z0-9_-]{8,}"),
    "api_hash value": re.compile(r"api_hash\W{1,4}[0-9a-f]{32}\b"),
}
# Short numeric codes collide with ports and ids: they count only next to a word like "code".
_CODE_CONTEXT = re.compile(r"code|phone_code|login|sign.?in", re.IGNORECASE)
_LOG_NAME = re.compile(r"\.log(?:\.\d+)?$")
# Logs of third-party servers the tests run, and what they write that we cannot change. The real
# step-ca's request log records the one-time token ("ott") of every /1.0/sign request; that
# request is what spends it (a replay is answered "token already used"). Anything else is a find.
THIRD_PARTY_ALLOWED = {"step-ca.log": {"JWT-shaped token"}}
MAX_FINDINGS = 50


@dataclass(frozen=True, slots=True)
class Finding:
    where: str  # file:line, or "log record <logger>"
    what: str
    excerpt: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}: {self.excerpt}"


class SecretRegistry:
    """Exact values that must never be logged; thread-safe (codes are made on worker threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, str] = {}
        self._numeric: dict[str, str] = {}

    def add(self, value: str, what: str) -> None:
        value = str(value)
        if len(value) < 5:
            return  # too short to tell from ordinary text
        with self._lock:
            if value.isdigit() and len(value) < 8:
                self._numeric[value] = what
            else:
                self._values[value] = what

    def scan_line(self, line: str) -> Iterator[tuple[str, str]]:
        """(what, matched text) for every secret in ``line``."""
        for what, pattern in PATTERNS.items():
            found = pattern.search(line)
            if found:
                yield what, found.group(0)
        with self._lock:
            values = list(self._values.items())
            numeric = list(self._numeric.items())
        for value, what in values:
            if value in line:
                yield what, value
        if numeric and _CODE_CONTEXT.search(line):
            for number in re.findall(r"(?<![\d.:])\d{5,7}(?![\d])", line):
                for value, what in numeric:
                    if number == value:
                        yield what, value


REGISTRY = SecretRegistry()


def register_secret(value: str, what: str = "test secret") -> None:
    """Tests call this for any secret value they make that the patterns would not recognise."""
    REGISTRY.add(value, what)


def scan_text(text: str, source: str, registry: SecretRegistry = REGISTRY) -> list[Finding]:
    findings = []
    for number, line in enumerate(text.splitlines(), 1):
        for what, matched in registry.scan_line(line):
            findings.append(Finding(f"{source}:{number}", what, _excerpt(line, matched)))
    return findings


def log_files(base: Path) -> Iterable[Path]:
    for path in base.rglob("*"):
        if path.is_file() and not path.is_symlink() and (
                _LOG_NAME.search(path.name) or path.parent.name == "logs"):
            yield path


def scan_logs(base: Path, registry: SecretRegistry = REGISTRY,
              allowed: list[Finding] | None = None) -> list[Finding]:
    """Findings in every log under ``base``; those THIRD_PARTY_ALLOWED go to ``allowed``."""
    findings: list[Finding] = []
    for path in sorted(log_files(base)):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for finding in scan_text(text, str(path), registry):
            if finding.what in THIRD_PARTY_ALLOWED.get(path.name, ()):
                if allowed is not None:
                    allowed.append(finding)
            else:
                findings.append(finding)
    return findings


def _excerpt(line: str, matched: str) -> str:
    # Show where, not the whole secret again.
    start = max(0, line.find(matched) - 40)
    return (line[start:start + 40] + matched[:6] + "…").strip()


class RecordScanner(logging.Handler):
    """Sees every record that reaches the root logger, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.findings: list[Finding] = []
        self.records = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("tests"):
            return  # test helpers may print what they planted; the product may not
        try:
            text = self.format(record)
        except Exception:  # a bad record must not break the scan
            return
        self.records += 1
        if len(self.findings) < MAX_FINDINGS:
            for what, matched in REGISTRY.scan_line(text.replace("\n", " ")):
                self.findings.append(Finding(f"log record {record.name} ({record.levelname})",
                                             what, _excerpt(text, matched)))


_SCANNER_KEY = pytest.StashKey[RecordScanner]()


def _known_test_secrets() -> None:
    from tests.telegram_emulator import TEST_API_HASH

    REGISTRY.add(TEST_API_HASH, "test api_hash")
    for value in ("correct horse battery staple ☃", "correct horse", "battery staple"):
        REGISTRY.add(value, "test passphrase / 2FA password")
    try:
        from tests.test_key_protection import OTHER, PASSPHRASE

        REGISTRY.add(PASSPHRASE, "test passphrase")
        REGISTRY.add(OTHER, "test passphrase")
    except ImportError:
        pass


def _observe_code_makers() -> None:
    """Register codes as they are made (emulator login codes, provider enrollment codes, invite
    secrets); the wrapped functions behave exactly as before."""
    from chimera_tk.identity import telegram_codes
    from chimera_tk.pki import invite
    from tests.telegram_emulator.server import TelegramServer

    issue = TelegramServer._issue_code

    def observed_issue(self, phone, phone_code_hash):  # type: ignore[no-untyped-def]
        code = issue(self, phone, phone_code_hash)
        REGISTRY.add(code.code, "Telegram login code")
        return code

    TelegramServer._issue_code = observed_issue  # type: ignore[method-assign]

    send_code = telegram_codes.TelethonCodeSender.send_code

    async def observed_send(self, user_id, text):  # type: ignore[no-untyped-def]
        for code in re.findall(r"\b\d{8}\b", text):
            REGISTRY.add(code, "enrollment code")
        return await send_code(self, user_id, text)

    telegram_codes.TelethonCodeSender.send_code = observed_send  # type: ignore[method-assign]

    new_secret = invite.new_invite_secret

    def observed_secret() -> str:
        secret = new_secret()
        REGISTRY.add(secret, "invite secret")
        return secret

    invite.new_invite_secret = observed_secret


def pytest_configure(config: pytest.Config) -> None:
    _known_test_secrets()
    _observe_code_makers()
    scanner = RecordScanner()
    logging.getLogger().addHandler(scanner)
    config.stash[_SCANNER_KEY] = scanner


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    scanner = config.stash.get(_SCANNER_KEY, None)
    if scanner is None or hasattr(config, "workerinput"):
        return
    logging.getLogger().removeHandler(scanner)
    findings = list(scanner.findings)
    factory = getattr(config, "_tmp_path_factory", None)
    base = factory.getbasetemp() if factory is not None else None
    scanned = 0
    allowed: list[Finding] = []
    if base is not None and base.is_dir():
        files = list(log_files(base))
        scanned = len(files)
        findings += scan_logs(base, allowed=allowed)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    summary = (f"secret scan: {scanned} log files and {scanner.records} log records, "
               f"{len(findings)} secrets found")
    if allowed:
        summary += (f" ({len(allowed)} spent one-time tokens in third-party step-ca logs "
                    "allowed, see THIRD_PARTY_ALLOWED)")
    if reporter is not None:
        reporter.write("\n")  # the progress line may still be open
        reporter.write_line(summary)
    if findings:
        for finding in findings[:MAX_FINDINGS]:
            line = f"SECRET IN LOG {finding}"
            if reporter is not None:
                reporter.write_line(line, red=True)
            else:
                print(line)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
