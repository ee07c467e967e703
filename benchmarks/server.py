"""`bookchat serve` as a child process: a clean environment, health wait, peak RSS, profiling."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

import httpx
import psutil  # type: ignore[import-untyped, unused-ignore]

from bookchat.core.config import Settings

# Every name the server reads from the environment; a developer's exports must not leak in.
SETTING_NAMES = frozenset(name.upper() for name in Settings.model_fields)
START_TIMEOUT = 60.0
RSS_INTERVAL = 0.1


def clean_environment(settings: dict[str, str]) -> dict[str, str]:
    """This process's environment without any setting, plus `settings`."""
    env = {key: value for key, value in os.environ.items() if key.upper() not in SETTING_NAMES}
    env.update(settings)
    return env


def free_port() -> int:
    """A loopback port that is free now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RssSampler:
    """Samples a process's resident memory every 100 ms in a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.peak_bytes = 0

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak_bytes = max(self.peak_bytes, self._process.memory_info().rss)
            except psutil.Error:
                return
            self._stop.wait(RSS_INTERVAL)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class BookchatServer:
    """`python -m bookchat.cli serve` (one worker) in a scratch folder, so no `.env` is read."""

    def __init__(self, settings: dict[str, str], *, workdir: Path, name: str) -> None:
        self.settings = settings
        self.workdir = workdir
        self.name = name
        self.port = free_port()
        self.log = workdir / f"server-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.rss: RssSampler | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def peak_rss_mb(self) -> float:
        return (self.rss.peak_bytes if self.rss else 0) / 2**20

    def command(self) -> list[str]:
        """What runs the server (a subclass may wrap it, e.g. for an experiment)."""
        return [sys.executable, "-m", "bookchat.cli", "serve", "--port", str(self.port)]

    def start(self) -> BookchatServer:
        command = self.command()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
                command,
                cwd=self.workdir,
                env=clean_environment(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:  # whatever interrupts the start (Ctrl-C too) must not leave the server running
            self.rss = RssSampler(self.process.pid)
            self.rss.start()
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"bookchat serve ({self.name}) did not become healthy:\n{tail}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown runs the lifespan
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self.rss is not None:
            self.rss.stop()

    def __enter__(self) -> BookchatServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Profiler:
    """`py-spy record` attached to a pid, writing collapsed stacks (`--format raw`).

    `--gil` keeps only the samples of the thread holding the GIL: with one worker that is where
    the single usable core goes (idle pool threads would otherwise swamp the profile), and
    `--nonblocking` keeps py-spy from pausing the server at every sample.
    """

    def __init__(self, pid: int, output: Path) -> None:
        self.pid = pid
        self.output = output
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def available() -> str | None:
        return shutil.which("py-spy")

    def start(self) -> None:
        binary = self.available()
        if binary is None:
            raise RuntimeError("py-spy is not on PATH (run with `uv run --with py-spy ...`)")
        command = [binary, "record", "--pid", str(self.pid), "--format", "raw"]
        command += ["--gil", "--nonblocking", "--rate", "100", "--output", str(self.output)]
        log = self.output.with_suffix(".log")
        with log.open("wb") as errors:
            self.process = subprocess.Popen(  # noqa: S603 (py-spy from PATH, fixed arguments)
                command, stdout=subprocess.DEVNULL, stderr=errors, start_new_session=True
            )
        try:
            time.sleep(1.0)  # attaching takes a moment
            if self.process.poll() is not None:
                error = log.read_text(errors="replace").strip()
                raise RuntimeError(f"py-spy could not attach: {error}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
