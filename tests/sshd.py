"""A real sshd on 127.0.0.1 for SSH target tests: generated keys, key authentication only, a free port.

It runs as the current user with its own config (UsePAM no), so a test can reach "a board" on
loopback; it is stopped by its PID. The client side is an ssh_config file naming the key and a
known_hosts file that already holds the server's host key.
"""

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def _keygen(path):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgeopt-test", "-f", str(path)], check=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopbackSshd:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.user = getpass.getuser()
        self.port = free_port()
        for name in ("host_key", "client_key", "stranger_key"):
            _keygen(self.folder / name)
        shutil.copy(self.folder / "client_key.pub", self.folder / "authorized_keys")
        (self.folder / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.folder / 'host_key'}\n"
            f"PidFile {self.folder / 'sshd.pid'}\nAuthorizedKeysFile {self.folder / 'authorized_keys'}\n"
            "PubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            f"UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nAllowUsers {self.user}\nLogLevel ERROR\n"
        )
        host_pub = (self.folder / "host_key.pub").read_text().split()[:2]
        (self.folder / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {' '.join(host_pub)}\n")
        self.config = self.client_config("client_key")
        self.process = None

    def client_config(self, key_name) -> Path:
        path = self.folder / f"ssh_config.{key_name}"
        path.write_text(
            f"Host 127.0.0.1\n  IdentityFile {self.folder / key_name}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {self.folder / 'known_hosts'}\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n"
        )
        return path

    def start(self):
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation directory
        self.process = subprocess.Popen([SSHD, "-D", "-f", str(self.folder / "sshd_config"),
                                         "-E", str(self.folder / "sshd.log")])
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.folder / 'sshd.log').read_text()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.1)
        raise RuntimeError("sshd did not start listening within 10 s")

    def stop(self):
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)

    def spec(self, config=None, **options) -> str:
        """ssh://user@127.0.0.1:port?config=...&more, as a user would write the target."""
        from urllib.parse import urlencode

        query = urlencode({"config": str(config or self.config), **options})
        return f"ssh://{self.user}@127.0.0.1:{self.port}?{query}"
