"""Run the fake OpenAI-compatible server in a process of its own, for benchmarks.

    python benchmarks/fake_llm.py --port 0 --ttft 0.3 --token-delay 0.033 --tokens 60

prints ``PORT <n>`` on stdout once it listens, then serves until SIGINT or SIGTERM. In its own
process the fake does not compete with the load generator (or the server) for a GIL.
`FakeLLM` starts and stops that process from the harness.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

import httpx

ROOT = Path(__file__).resolve().parent.parent
READY_PREFIX = "PORT "


def reply_text(tokens: int) -> str:
    """An answer of exactly `tokens` streamed tokens that cites source [1]."""
    words = ["The", "book", "covers", "this", "[1]."]
    words += [f"detail{i}" for i in range(max(0, tokens - len(words)))]
    return " ".join(words[: max(1, tokens)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--port", type=int, default=0, choices=[0], help="0: a free loopback port (the only choice)"
    )
    parser.add_argument("--ttft", type=float, default=0.0, help="seconds to the first token")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds between tokens")
    parser.add_argument("--tokens", type=int, default=60, help="tokens per answer")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from tests.fakes.openai_server import FakeOpenAIServer

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fake = FakeOpenAIServer(
        reply=reply_text(args.tokens), ttft=args.ttft, token_delay=args.token_delay
    )
    with fake:
        print(f"{READY_PREFIX}{fake.port}", flush=True)
        while not stop.wait(0.5):
            pass


@dataclass(frozen=True, slots=True)
class Knobs:
    """Seconds to the first token, seconds between tokens, tokens per answer."""

    ttft: float = 0.0
    token_delay: float = 0.0
    tokens: int = 60


class FakeLLM:
    """The fake LLM as a child process: `with FakeLLM(Knobs(ttft=0.3), log=...) as fake:`."""

    def __init__(self, knobs: Knobs, *, log: Path) -> None:
        self.knobs = knobs
        self.log = log
        self.process: subprocess.Popen[str] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """What the server's OPENAI_BASE_URL should be."""
        return f"{self.url}/v1"

    def start(self) -> FakeLLM:
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--port=0",
            f"--ttft={self.knobs.ttft}",
            f"--token-delay={self.knobs.token_delay}",
            f"--tokens={self.knobs.tokens}",
        ]
        with self.log.open("a") as errors:
            self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and script)
                command, stdout=subprocess.PIPE, stderr=errors, text=True, start_new_session=True
            )
        try:  # whatever interrupts the start (Ctrl-C too) must not leave the fake running
            assert self.process.stdout is not None
            line = self.process.stdout.readline()  # blocks until ready, or "" when it died
            if not line.startswith(READY_PREFIX):
                raise RuntimeError(f"the fake LLM did not start; see {self.log}")
            self.port = int(line.removeprefix(READY_PREFIX))
        except BaseException:
            self.stop()
            raise
        return self

    def first_token_times(self) -> list[float]:
        """The fake's send times of each streamed answer's first token since the last reset."""
        times: list[float] = httpx.get(f"{self.url}/_fake/first_tokens", timeout=10).json()
        return times

    def reset(self) -> None:
        """Forget recorded requests (they pile up in the fake's memory otherwise)."""
        httpx.post(f"{self.url}/_fake/reset", timeout=10).raise_for_status()

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
