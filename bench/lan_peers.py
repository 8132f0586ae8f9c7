"""The file-transfer tools bench/lan.py measures Chimera against, each between hosts a and b.

Every tool moves one file from host a into a file on host b and reports
``(seconds, sender CPU seconds, receiver CPU seconds)``; the CPU comes from ``wait4`` on the
tool's own processes (``ip netns exec`` execs the command in place, so the pid is the tool's).
A tool that cannot run here raises :class:`ToolUnavailable` from ``start()`` with the reason,
which becomes the peer column of its row: a missing peer is never silently left out.

- ``openssl``: ``s_server`` in b writes what it receives to the target file; ``s_client`` in a
  reads the source from stdin. TLS 1.3, mutual authentication with the same ECDSA P-256
  certificates and team root as Chimera (the client checks the server's name too). The clock
  runs from starting ``s_client`` until ``s_server`` exits (``-naccept 1``: after the last byte
  is written and the connection closed).
- ``scp``: an sshd started in b with throwaway keys.
- ``wormhole``: magic-wormhole from its own virtual environment (installed on first use with
  pip into ``bench/out/``), with its mailbox server and transit relay running in b on b's address
  and both clients pointed at them (``--relay-url``/``--transit-helper``), so no traffic leaves
  the namespaces. The clock runs from starting ``wormhole send`` until ``wormhole receive`` exits.

Each tool's set-up (process start, handshake or key exchange) is measured with a one-byte file,
three times (not with ``--quick``), and its median (time and CPU) is subtracted from every
transfer: the figures compare moving bytes on a warm link, as Chimera's (which runs over a
connection already verified) does.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_TOOLS_VENV = BENCH_DIR / "out" / "tools-venv"
WORMHOLE_PACKAGES = ("magic-wormhole", "magic-wormhole-mailbox-server",
                     "magic-wormhole-transit-relay")
SSH_PORT = 22
OPENSSL_PORT = 50070
MAILBOX_PORT = 50071
TRANSIT_PORT = 50072


class ToolUnavailable(Exception):
    """The tool cannot run on this machine; the message says why (and how to fix it)."""


@dataclass(frozen=True, slots=True)
class Transfer:
    seconds: float
    sender_cpu: float
    receiver_cpu: float


def die_with_parent() -> None:
    """``preexec_fn`` for every process the benchmark starts: the kernel kills it if the script
    dies (bench/run's timeout sends SIGKILL, which no cleanup code survives)."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def process_cpu(pid: int) -> float:
    """User + system seconds of a process, its threads and its reaped children."""
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def reap(process: subprocess.Popen) -> tuple[int, float]:
    """Wait for ``process`` with wait4: (exit code, its CPU seconds)."""
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime


def wait_listening(host: Any, port: int, process: subprocess.Popen, what: str,
                   timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = host.run(["ss", "-ltnH", f"sport = :{port}"], check=False)
        if host.address in probe.stdout:
            return
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start listening on {host.address}:{port}")


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-1500:]
    return ""


class Tool:
    """One peer tool: ``start()`` (may raise ToolUnavailable), ``transfer()``, ``stop()``."""

    name = ""
    label = ""

    def __init__(self, net: Any, folder: Path) -> None:
        self.net = net
        self.folder = folder
        self.setup = Transfer(0.0, 0.0, 0.0)

    def start(self) -> None:
        self.folder.mkdir(mode=0o700, exist_ok=True)

    def raw_transfer(self, source: Path, target: Path) -> Transfer:
        raise NotImplementedError

    def stop(self) -> None:
        pass

    def measure_setup(self, runs: int = 3) -> Transfer:
        """The median set-up (time and CPU) over ``runs`` transfers of a one-byte file."""
        tiny = self.folder / "one-byte"
        tiny.write_bytes(b"x")
        target = self.folder / "one-byte-out"
        setups = []
        for _ in range(runs):
            setups.append(self.raw_transfer(tiny, target))
            target.unlink(missing_ok=True)

        def middle(values: list[float]) -> float:
            return sorted(values)[len(values) // 2]

        if not setups:
            return self.setup
        self.setup = Transfer(middle([s.seconds for s in setups]),
                              middle([s.sender_cpu for s in setups]),
                              middle([s.receiver_cpu for s in setups]))
        return self.setup

    def transfer(self, source: Path, target: Path) -> Transfer:
        """One transfer less the set-up (never below a microsecond or zero CPU)."""
        raw = self.raw_transfer(source, target)
        return Transfer(max(raw.seconds - self.setup.seconds, 1e-6),
                        max(raw.sender_cpu - self.setup.sender_cpu, 0.0),
                        max(raw.receiver_cpu - self.setup.receiver_cpu, 0.0))


# -- openssl s_server / s_client ------------------------------------------------------------------


class OpenSslPair(Tool):
    name = "openssl"
    label = "openssl s_server/s_client (TLS 1.3)"

    def __init__(self, net: Any, folder: Path, sender_tls: Any, receiver_tls: Any,
                 receiver_id: int) -> None:
        super().__init__(net, folder)
        self.sender_tls = sender_tls
        self.receiver_tls = receiver_tls
        self.receiver_id = receiver_id

    def start(self) -> None:
        if shutil.which("openssl") is None:
            raise ToolUnavailable("openssl not installed (apt-get install openssl)")
        super().start()

    def raw_transfer(self, source: Path, target: Path) -> Transfer:
        a, b = self.net["a"], self.net["b"]
        tls, peer_tls = self.sender_tls, self.receiver_tls
        server_log, client_log = self.folder / "s_server.err", self.folder / "s_client.err"
        with open(target, "wb") as out, open(server_log, "wb") as server_err:
            # stdin stays an open pipe: s_server ends the connection when its stdin ends
            server = b.popen(
                ["openssl", "s_server", "-accept", f"{b.address}:{OPENSSL_PORT}", "-tls1_3",
                 "-cert", str(peer_tls.certificate_chain), "-key", str(peer_tls.key),
                 "-CAfile", str(peer_tls.ca_bundle), "-Verify", "1", "-verify_return_error",
                 "-quiet", "-naccept", "1"],
                stdin=subprocess.PIPE, stdout=out, stderr=server_err,
                preexec_fn=die_with_parent)
        try:
            wait_listening(b, OPENSSL_PORT, server, "openssl s_server")
            with open(source, "rb") as data, open(client_log, "wb") as client_err:
                start = time.perf_counter()
                client = a.popen(
                    ["openssl", "s_client", "-connect", f"{b.address}:{OPENSSL_PORT}",
                     "-tls1_3", "-cert", str(tls.certificate_chain), "-key",
                     str(tls.key), "-CAfile", str(tls.ca_bundle),
                     "-verify_return_error", "-verify_hostname", str(self.receiver_id),
                     "-quiet", "-no_ign_eof", "-nocommands"],
                    stdin=data, stdout=subprocess.DEVNULL, stderr=client_err,
                    preexec_fn=die_with_parent)
            server_code, server_cpu = reap(server)
            seconds = time.perf_counter() - start
            client_code, client_cpu = reap(client)
        finally:
            if server.stdin is not None:
                server.stdin.close()
            if server.returncode is None:
                server.kill()
                server.wait(5)
        if server_code != 0 or client_code != 0:
            raise RuntimeError(f"openssl transfer failed (s_server {server_code}, s_client "
                               f"{client_code}): {_tail(server_log)} {_tail(client_log)}")
        if target.stat().st_size != source.stat().st_size:
            raise RuntimeError(f"openssl: {target.stat().st_size} of "
                               f"{source.stat().st_size} bytes arrived")
        return Transfer(seconds, client_cpu, server_cpu)


# -- scp ----------------------------------------------------------------------------------------


class ScpTool(Tool):
    """sshd inside host b on its address, with a throwaway host key and one authorized key."""

    name = "scp"
    label = "scp (OpenSSH)"

    def __init__(self, net: Any, folder: Path) -> None:
        super().__init__(net, folder)
        self.process: subprocess.Popen | None = None
        self._made_run_dir = False
        self._stderr: IO[bytes] | None = None

    def start(self) -> None:
        if shutil.which("scp") is None or not (shutil.which("sshd")
                                               or Path("/usr/sbin/sshd").exists()):
            raise ToolUnavailable("scp/sshd not installed "
                                  "(apt-get install openssh-client openssh-server)")
        super().start()
        folder = self.folder
        for name in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(folder / name)], check=True)
        shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
        host = self.net["b"]
        config = folder / "sshd_config"
        config.write_text(
            f"ListenAddress {host.address}:{SSH_PORT}\nHostKey {folder / 'host_key'}\n"
            f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile none\nUsePAM no\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nStrictModes no\nLogLevel ERROR\n"
            "Subsystem sftp internal-sftp\n")
        run_dir = Path("/run/sshd")  # sshd's privilege separation directory
        if not run_dir.exists():
            run_dir.mkdir(mode=0o755, parents=True)
            self._made_run_dir = True
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        self._stderr = open(folder / "sshd.err", "wb")  # noqa: SIM115 - closed in stop()
        self.process = host.popen([sshd, "-D", "-e", "-f", str(config)],
                                  stdout=subprocess.DEVNULL, stderr=self._stderr,
                                  preexec_fn=die_with_parent)
        try:
            wait_listening(host, SSH_PORT, self.process, "sshd")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {_tail(folder / 'sshd.err')}") from None

    def _settle(self, timeout: float = 5.0) -> None:
        """Wait until the per-connection sshd processes are gone (their CPU is then counted
        in the listener's children times)."""
        import psutil

        assert self.process is not None
        listener = psutil.Process(self.process.pid)
        deadline = time.monotonic() + timeout
        while listener.children() and time.monotonic() < deadline:
            time.sleep(0.01)

    def raw_transfer(self, source: Path, target: Path) -> Transfer:
        assert self.process is not None
        server_cpu = process_cpu(self.process.pid)
        key = self.folder / "client_key"
        argv = ["scp", "-q", "-F", "/dev/null", "-i", str(key), "-P", str(SSH_PORT),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", str(source),
                f"root@{self.net['b'].address}:{target}"]
        errors = self.folder / "scp.err"
        with open(errors, "wb") as err:
            start = time.perf_counter()
            process = self.net["a"].popen(argv, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=err,
                                          preexec_fn=die_with_parent)
            code, client_cpu = reap(process)
            seconds = time.perf_counter() - start
        if code != 0:
            raise RuntimeError(f"scp failed ({code}): {_tail(errors)}")
        self._settle()
        return Transfer(seconds, client_cpu, process_cpu(self.process.pid) - server_cpu)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(5)
        if self._stderr is not None:
            self._stderr.close()
        if self._made_run_dir:
            with contextlib.suppress(OSError):
                Path("/run/sshd").rmdir()


# -- magic-wormhole -------------------------------------------------------------------------------


def ensure_wormhole(venv: Path) -> Path:
    """The ``bin`` folder of a virtual environment with magic-wormhole, its mailbox server and
    its transit relay; created with pip on first use. Raises ToolUnavailable with the reason."""
    bin_dir = venv / "bin"
    wanted = [bin_dir / "wormhole", bin_dir / "twist"]
    if all(path.exists() for path in wanted):
        return bin_dir
    try:
        if not (bin_dir / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True,
                           capture_output=True, timeout=120)
        subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", *WORMHOLE_PACKAGES], check=True,
                       capture_output=True, timeout=600)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        raise ToolUnavailable(f"magic-wormhole could not be installed into {venv} "
                              f"({detail[-1] if detail else exc})") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolUnavailable(f"magic-wormhole could not be installed into {venv}: {exc}"
                              ) from None
    if not all(path.exists() for path in wanted):
        raise ToolUnavailable(f"magic-wormhole installed into {venv} without its commands")
    return bin_dir


class WormholePair(Tool):
    name = "wormhole"
    label = "magic-wormhole (own mailbox + transit relay)"

    def __init__(self, net: Any, folder: Path, venv: Path) -> None:
        super().__init__(net, folder)
        self.venv = venv
        self.bin_dir: Path | None = None
        self.servers: list[subprocess.Popen] = []
        self._logs: list[IO[bytes]] = []

    def start(self) -> None:
        self.bin_dir = ensure_wormhole(self.venv)
        super().start()
        host = self.net["b"]
        twist = str(self.bin_dir / "twist")
        servers = (
            ("mailbox", [twist, "wormhole-mailbox",
                         f"--port=tcp:{MAILBOX_PORT}:interface={host.address}",
                         f"--channel-db={self.folder / 'mailbox.sqlite'}"], MAILBOX_PORT),
            ("transit", [twist, "transitrelay",
                         f"--port=tcp:{TRANSIT_PORT}:interface={host.address}"], TRANSIT_PORT))
        for name, argv, _port in servers:  # both start at once: Twisted is slow to import
            log = open(self.folder / f"{name}.log", "wb")  # noqa: SIM115 - closed in stop()
            self._logs.append(log)
            self.servers.append(host.popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                           cwd=self.folder, preexec_fn=die_with_parent))
        for (name, _argv, port), server in zip(servers, self.servers, strict=True):
            try:
                wait_listening(host, port, server, f"the wormhole {name} server", timeout=60)
            except RuntimeError as exc:
                raise RuntimeError(f"{exc}: {_tail(self.folder / f'{name}.log')}") from None

    def _client(self) -> list[str]:
        assert self.bin_dir is not None
        address = self.net["b"].address
        return [str(self.bin_dir / "wormhole"), "--relay-url", f"ws://{address}:{MAILBOX_PORT}/v1",
                "--transit-helper", f"tcp:{address}:{TRANSIT_PORT}"]

    def raw_transfer(self, source: Path, target: Path) -> Transfer:
        code = f"{secrets.randbelow(900) + 100}-chimera-bench-{secrets.token_hex(4)}"
        send_log, receive_log = self.folder / "send.log", self.folder / "receive.log"
        with open(send_log, "wb") as send_out, open(receive_log, "wb") as receive_out:
            start = time.perf_counter()
            sender = self.net["a"].popen(
                [*self._client(), "send", "--hide-progress", "--no-qr", "--code", code,
                 str(source)], stdin=subprocess.DEVNULL, stdout=send_out,
                stderr=subprocess.STDOUT, cwd=self.folder, preexec_fn=die_with_parent)
            receiver = self.net["b"].popen(
                [*self._client(), "receive", "--hide-progress", "--accept-file", "--output-file",
                 str(target), code], stdin=subprocess.DEVNULL, stdout=receive_out,
                stderr=subprocess.STDOUT, cwd=target.parent, preexec_fn=die_with_parent)
            receiver_code, receiver_cpu = reap(receiver)
            seconds = time.perf_counter() - start
            sender_code, sender_cpu = reap(sender)
        if receiver_code != 0 or sender_code != 0:
            raise RuntimeError(f"wormhole transfer failed (send {sender_code}, receive "
                               f"{receiver_code}): {_tail(send_log)} {_tail(receive_log)}")
        if not target.exists() or target.stat().st_size != source.stat().st_size:
            raise RuntimeError(f"wormhole: the file did not arrive whole: {_tail(receive_log)}")
        return Transfer(seconds, sender_cpu, receiver_cpu)

    def stop(self) -> None:
        for server in self.servers:
            if server.poll() is None:
                server.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    server.wait(10)
            if server.poll() is None:
                server.kill()
                server.wait(5)
        for log in self._logs:
            log.close()
