"""Loading a fastembed model (an embedder or a cross-encoder) without ever hanging on a hub.

A model comes from a local folder (`*_MODEL_PATH`), else from the model cache, else from Hugging
Face, waiting at most a bounded time. A model that cannot be had raises the caller's error class
quickly, with a one-line reason; the caller decides whether that is fatal or a fallback.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

import structlog

if TYPE_CHECKING:
    # fastembed (and with it onnxruntime) is imported by the model classes that load one.
    from fastembed.common.model_description import BaseModelDescription

logger = structlog.get_logger(__name__)

M = TypeVar("M")

# With one of these set, only the download itself can tell whether the hub is reachable.
PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
)
# The longest wait for the hub to accept a connection, when nothing is cached.
HUB_PROBE_SECONDS = 3.0


class FastembedModelClass(Protocol[M]):  # type: ignore[misc]
    """What fastembed's model classes (`TextEmbedding`, `TextCrossEncoder`) offer for loading."""

    def __call__(self, model_name: str, **kwargs: Any) -> M: ...

    def download_files_from_huggingface(
        self, hf_source_repo: str, cache_dir: str, extra_patterns: list[str], **kwargs: Any
    ) -> str: ...


@contextlib.contextmanager
def fastembed_quiet() -> Iterator[None]:
    """Hide fastembed's ERROR lines while we probe the cache: a miss there is expected."""
    from loguru import logger as fastembed_logger

    fastembed_logger.disable("fastembed")
    try:
        yield
    finally:
        fastembed_logger.enable("fastembed")


def hub_offline() -> bool:
    # Hugging Face's own switch, not a bookchat setting. huggingface_hub reads it once at import;
    # fastembed reads it at each load, and so do we, so that setting it later still counts.
    from huggingface_hub import is_offline_mode

    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return is_offline_mode() or value in {"1", "TRUE", "YES", "ON"}


def refuse_unreachable_download(
    name: str,
    *,
    cache_dir: str | None,
    model_path: str | None,
    timeout: float,
    error: type[Exception],
    advice: str,
) -> None:
    """Raise `error` when the model could only come from the hub (no `model_path`, nothing in
    the cache) and the hub does not take a connection; without importing fastembed and its
    ONNX runtime (a second and about 40 MB) for a download that cannot happen. With a proxy
    configured, or a cache that holds anything, the loader decides as usual."""
    if model_path is not None or cache_dir is None or _holds_anything(Path(cache_dir)):
        return
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return
    endpoint = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=min(timeout, HUB_PROBE_SECONDS)):
            return
    except OSError as exc:
        raise error(
            f"fastembed model {name} is not in the model cache {cache_dir} and could not be "
            f"downloaded ({host} does not answer: {short_error(exc)}); {advice}"
        ) from exc


def _holds_anything(folder: Path) -> bool:
    try:
        return any(folder.iterdir())
    except OSError:  # missing, or not a folder
        return False


def short_error(exc: BaseException) -> str:
    """The error as `Type: text` on one line, cut to a readable length."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= 160 else text[:157] + "..."


def load_fastembed_model(
    model_class: FastembedModelClass[M],
    description: BaseModelDescription,
    *,
    cache_dir: str,
    model_path: str | None,
    path_setting: str,
    allow_download: bool,
    download_timeout: float,
    error: type[Exception],
    advice: str,
) -> tuple[M, str]:
    """The loaded model and where it came from (`path`, `cache` or `download`).

    Raises `error` with a one-line reason (ending with `advice`) when the model cannot be had.
    A download still running after `download_timeout` seconds is left to a daemon thread that
    cannot keep the process alive, and may still fill the cache for the next start.
    """
    name = description.model
    if model_path is not None:
        if not Path(model_path).is_dir():
            raise error(
                f"{path_setting} {model_path} is not a folder: point it at a local copy of "
                f"{name} (model.onnx, tokenizer.json, ...)"
            )
        try:
            return model_class(name, cache_dir=cache_dir, specific_model_path=model_path), "path"
        except Exception as exc:
            raise error(
                f"fastembed model {name} cannot be loaded from {model_path} "
                f"({short_error(exc)}); check that the folder holds that model's ONNX export"
            ) from exc
    cached = _load_cached(model_class, name, cache_dir)
    if cached is not None:
        return cached, "cache"
    missing = f"fastembed model {name} is not in the model cache {cache_dir}"
    if not allow_download:
        raise error(f"{missing} and downloads are off; {advice}")
    if hub_offline():
        raise error(f"{missing} and HF_HUB_OFFLINE forbids downloading it; {advice}")
    logger.info("fastembed.downloading", model=name, cache_dir=cache_dir)
    _download(model_class, description, cache_dir, download_timeout, error, missing, advice)
    cached = _load_cached(model_class, name, cache_dir)
    if cached is None:
        raise error(
            f"fastembed model {name} was downloaded to {cache_dir} but cannot be loaded from "
            f"there; {advice}"
        )
    return cached, "download"


def _load_cached(model_class: FastembedModelClass[M], name: str, cache_dir: str) -> M | None:
    try:
        with fastembed_quiet():
            return model_class(name, cache_dir=cache_dir, local_files_only=True)
    except Exception:
        return None


def _download(
    model_class: FastembedModelClass[M],
    description: BaseModelDescription,
    cache_dir: str,
    timeout: float,
    error: type[Exception],
    missing: str,
    advice: str,
) -> None:
    failure: list[BaseException] = []

    def download() -> None:
        try:
            # What fastembed's download_model does for a Hugging Face source, minus its retry
            # loop, which sleeps 3 s even after the last attempt (27 s more with retries).
            if not description.sources.hf:  # pragma: no cover - every built-in model is on HF
                raise RuntimeError(f"{description.model} has no Hugging Face source")
            model_class.download_files_from_huggingface(
                description.sources.hf,
                cache_dir,
                extra_patterns=[description.model_file, *description.additional_files],
            )
        except BaseException as exc:  # reported by the waiting thread
            failure.append(exc)

    # A daemon thread rather than an executor: a download stuck on a silent network must not
    # keep the process from exiting once we have stopped waiting for it.
    thread = threading.Thread(target=download, name="fastembed-download", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise error(f"{missing} and could not be downloaded within {timeout:g} s; {advice}")
    if failure:
        raise error(
            f"{missing} and could not be downloaded ({short_error(failure[0])}); {advice}"
        ) from failure[0]
