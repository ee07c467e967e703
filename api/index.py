"""Vercel's entry point: the bookchat app as one Python function (see docs/deploy.md).

vercel.json sends every path here. On Vercel (which sets VERCEL=1) the app refuses the
embedded stores: set DATABASE_URL to Neon's pooled URL and QDRANT_URL to Qdrant Cloud.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

try:
    import bookchat  # noqa: F401  (installed from pyproject.toml by the platform)
except ModuleNotFoundError:  # a platform that installs the dependencies only
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from bookchat.serverless import create_serverless_app

app = create_serverless_app(require_servers=os.environ.get("VERCEL") == "1")
