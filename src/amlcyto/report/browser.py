"""How the report's checks open it in a real browser: Debian's headless Chromium.

Used by the browser test and bench h (through Playwright, which drives this Chromium and never
downloads a browser of its own).
"""

from __future__ import annotations

import shutil

# As root Chromium needs --no-sandbox; the rest turn off its own background connections,
# which a closed network refuses many at a time.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def find_chromium() -> str | None:
    """The Chromium on the PATH (Debian's package ``chromium``), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")
