"""A real XRootD server on 127.0.0.1 for tests of ``root://`` input files.

The server is Debian's ``xrootd-server`` (``apt-get install -y --no-install-recommends xrootd-server``); the client
side is the ``xrootd`` and ``fsspec-xrootd`` packages of the cf venv (``sandboxes/columnar.txt``). The server
refuses to run as root, so it is started with ``-R xrootd`` (the user the package creates) when the tests run as
root; everything it serves, and its log and pid files, are made accessible to that user.

Example::

    with XRootDServer() as server:  # serves a new temporary folder, server.root_dir
        server.add_file(local_file, "file.root")  # a copy, readable by the server
        source = open_source(server.url("file.root"))

or, in a test, the session fixture ``xrootd_server`` (``tests/conftest.py`` loads this module as a plugin)::

    def test_remote(xrootd_server: XRootDServer) -> None:
        path = xrootd_server.add_file(local_file)  # copied into the served directory
        source = open_source(xrootd_server.url(path.name))

When the ``xrootd`` binary is missing, the tests using it are skipped, except in CI (environment variable ``CI``
set to a true value), where they fail: CI installs the server (``bin/cf_test``).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

#: The command that installs the server (Debian / Ubuntu).
INSTALL_COMMAND = "apt-get install -y --no-install-recommends xrootd-server"
#: The unprivileged user the server runs as when started by root.
XROOTD_USER = "xrootd"
#: Seconds to wait for the server to be ready.
STARTUP_TIMEOUT = 20.0
#: Seconds to wait for the server to exit after SIGTERM (then it is killed).
STOP_TIMEOUT = 10.0
#: The log line that means the server is ready (``------ xrootd anon@host:port initialization completed.``);
#: the lines of its parts (``File system server initialization completed``) come before it.
READY_LINE = re.compile(r"^-+ xrootd \S+ initialization completed", re.MULTILINE)
#: The log line that means the server failed to start.
FAILED_LINE = re.compile(r"^-+ xrootd \S+ initialization failed", re.MULTILINE)


def in_ci() -> bool:
    """Whether the environment variable ``CI`` is set to a true value (as CI services do)."""
    return os.environ.get("CI", "").strip().lower() not in {"", "0", "false", "no", "off"}


def require_xrootd() -> str:
    """The path of the ``xrootd`` server binary; skips the calling test without it (fails in CI).

    Returns:
        The absolute path of the binary.
    """
    binary = shutil.which("xrootd") or next(
        (path for path in ("/usr/bin/xrootd", "/usr/sbin/xrootd") if os.access(path, os.X_OK)), None
    )
    if binary is None:
        message = f"the XRootD server 'xrootd' is not installed; install it with '{INSTALL_COMMAND}'"
        if in_ci():
            pytest.fail(f"{message} (CI must run these tests: bin/cf_test installs it)", pytrace=False)
        pytest.skip(message)
    return binary


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now (the kernel's choice; another process may take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def make_readable(path: Path) -> None:
    """Make ``path`` and the folders above it readable (and traversable) for other users such as ``xrootd``.

    Folders get ``o+rx``, files ``o+r``; the folders from ``path`` up to ``/`` are made traversable (``o+x``), so
    that a file below a private temporary folder can be served.
    """
    path = path.resolve()
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            _add_mode(Path(root), 0o005)
            for name in dirs:
                _add_mode(Path(root, name), 0o005)
            for name in files:
                _add_mode(Path(root, name), 0o004)
    else:
        _add_mode(path, 0o004)
    for parent in path.parents:
        _add_mode(parent, 0o001)


def _add_mode(path: Path, bits: int) -> None:
    mode = path.stat().st_mode
    if mode & bits != bits:
        # not ours (e.g. /tmp): it is traversable already, or the server reports the error
        with contextlib.suppress(PermissionError):
            path.chmod(mode | bits)


def close_client_handles() -> None:
    """Close the file handles that the client (fsspec-xrootd) keeps open for reuse, to every server.

    fsspec-xrootd 0.5.5 keeps a file's handle open for 30 s after use and closes what is left when Python exits,
    in a finalizer that prints a traceback for each handle whose server has gone; the server closes them before
    it stops. Later reads simply open new handles.
    """
    try:
        from fsspec_xrootd import XRootDFileSystem
    except ImportError:
        return
    for filesystem in list(XRootDFileSystem._cache.values()):
        with contextlib.suppress(Exception):
            filesystem.invalidate_cache()


class XRootDServer:
    """An ``xrootd`` process serving a folder on 127.0.0.1 (a free port), as a context manager.

    Args:
        root_dir: The folder to serve: ``url("a/b.root")`` is ``root_dir / "a/b.root"``. It and the folders
            above it must be accessible to the server's user (:meth:`start` calls :func:`make_readable` on it,
            :meth:`add_file` on each copied file). Default: a new temporary folder, removed by :meth:`stop`.
        startup_timeout: Seconds to wait for the server's "initialization completed" log line.

    Attributes:
        root_dir: The served folder.
        port: The port the server listens on (0 until started).
    """

    def __init__(self, root_dir: Path | str | None = None, startup_timeout: float = STARTUP_TIMEOUT) -> None:
        self._own_root = root_dir is None
        self.root_dir = Path(tempfile.mkdtemp(prefix="cf_xrootd_served_") if root_dir is None else root_dir).resolve()
        self.startup_timeout = startup_timeout
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._work_dir: Path | None = None

    @property
    def log_file(self) -> Path:
        """The server's log file (its content is shown when the server does not start)."""
        if self._work_dir is None:
            raise RuntimeError("the XRootD server was not started")
        return self._work_dir / "xrootd.log"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def url(self, relative_path: str | Path) -> str:
        """The ``root://127.0.0.1:<port>//<relative_path>`` URL of a file below ``root_dir``."""
        if not self.port:
            raise RuntimeError("the XRootD server was not started")
        return f"root://127.0.0.1:{self.port}//{str(relative_path).lstrip('/')}"

    def add_file(self, source: Path | str, name: str | None = None) -> Path:
        """Copy ``source`` into the served folder (as ``name``, default its file name), readable by the server.

        Returns:
            The path of the copy.
        """
        destination = self.root_dir / (name or Path(source).name)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, destination)
        make_readable(destination)
        return destination

    def start(self, attempts: int = 3) -> XRootDServer:
        """Start the server and wait until it is ready; skips (or fails in CI) without the ``xrootd`` binary.

        Args:
            attempts: Tries with a new free port when the chosen one was taken in the meantime.

        Raises:
            RuntimeError: If the server exits or is not ready within ``startup_timeout`` (with its log).
        """
        binary = require_xrootd()
        self.root_dir.mkdir(parents=True, exist_ok=True)
        make_readable(self.root_dir)
        for attempt in range(attempts):
            try:
                return self._start(binary)
            except RuntimeError as error:
                if "already in use" not in str(error) or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _start(self, binary: str) -> XRootDServer:
        self._work_dir = Path(tempfile.mkdtemp(prefix="cf_xrootd_"))
        self.port = free_port()
        config = self._work_dir / "xrootd.cfg"
        config.write_text(
            "all.export /\n"
            f"xrd.port {self.port}\n"
            f"oss.localroot {self.root_dir}\n"
            "xrd.network nodnr\n"
            "xrd.allow host 127.0.0.1\n"
            f"all.adminpath {self._work_dir / 'admin'}\n"
            f"all.pidpath {self._work_dir}\n",
        )
        command = [binary, "-c", str(config), "-l", str(self.log_file), "-s", str(self._work_dir / "xrootd.pid")]
        if os.geteuid() == 0:
            # the server refuses to run as root; its work folder must be writable by the user it switches to
            shutil.chown(self._work_dir, user=XROOTD_USER, group=XROOTD_USER)
            command[1:1] = ["-R", XROOTD_USER]
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            log = self._log_text()
            if READY_LINE.search(log):
                return self
            if FAILED_LINE.search(log) or self._process.poll() is not None:
                break
            time.sleep(0.05)
        log = self._log_text()
        returncode = self._process.poll()
        self._terminate()
        self.port = 0
        state = f"exited with {returncode}" if returncode is not None else f"not ready after {self.startup_timeout} s"
        raise RuntimeError(f"the XRootD server ({' '.join(command)}) {state}; its log:\n{log[-4000:]}")

    def stop(self) -> None:
        """Terminate the server and wait for it to exit; idempotent. A temporary ``root_dir`` is removed."""
        self._terminate()
        if self._own_root:
            shutil.rmtree(self.root_dir, ignore_errors=True)

    def _terminate(self) -> None:
        # SIGTERM, then SIGKILL after STOP_TIMEOUT s; the work folder (config, log, pid) goes too
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            close_client_handles()
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None

    def _log_text(self) -> str:
        # the log file appears only once the server has started writing it
        try:
            return self.log_file.read_text(errors="replace")
        except (FileNotFoundError, RuntimeError):
            return ""

    def __enter__(self) -> XRootDServer:  # noqa: PYI034 (no subclasses)
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@pytest.fixture(scope="session")
def xrootd_server() -> Iterator[XRootDServer]:
    """An XRootD server for the session, serving an empty temporary folder (``server.root_dir``).

    Tests copy their files into it with ``server.add_file(path)`` and read them from ``server.url(name)``. The
    folder is a new one in the system's temporary folder, not below pytest's ``tmp_path`` (whose base folder
    pytest keeps private to its user, which the server's user ``xrootd`` could then not enter).
    """
    with XRootDServer() as server:
        yield server
