"""PNG and SVG images of Plotly figures, rendered offline by kaleido with the machine's Chromium.

One headless Chromium is started on first use and kept open (kaleido's `Kaleido`, in a background thread with its
own event loop): the first image takes ~3.5 s, later ones ~0.3 s, where `fig.to_image` starts a browser for every
call (~4.5 s). plotly.js comes from the installed plotly package and MathJax is off, so nothing is fetched from the
network; kaleido's own browser download (`get_chrome`) is never used. Without Chromium every call raises
`ExportError` with the one-line fix (CHROMIUM_HINT).
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import threading

from bif.errors import BIFError

FORMATS = ("png", "svg")
CHROMIUM_HINT = "PNG/SVG export needs Chromium: apt-get install chromium (or set BROWSER_PATH to a Chrome binary)."
TIMEOUT_S = 90.0
PNG_SCALE = 2  # pixels per layout pixel: sharp on high-density screens and in slides


class ExportError(BIFError):
    """A figure could not be rendered to an image (no Chromium, or the browser failed)."""


def browser_path() -> str | None:
    """The Chromium or Chrome binary kaleido will drive: BROWSER_PATH, else the first one on PATH; None if none."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if os.path.isfile(env) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def available() -> bool:
    """Whether images can be rendered here (a browser binary exists and kaleido is installed; no import)."""
    import importlib.util

    return importlib.util.find_spec("kaleido") is not None and browser_path() is not None


class _Renderer:
    """A kaleido browser kept open in a daemon thread; `render` may be called from any thread, one at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kaleido = None

    def _start(self) -> None:
        import kaleido

        path = browser_path()
        if path is None:
            raise ExportError(CHROMIUM_HINT)
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, name="bif-kaleido", daemon=True).start()

        async def open_browser():
            k = kaleido.Kaleido(n=1, timeout=TIMEOUT_S, mathjax=False, path=path)
            await k.open()
            return k

        try:
            self._kaleido = asyncio.run_coroutine_threadsafe(open_browser(), loop).result(TIMEOUT_S)
        except Exception as e:
            loop.call_soon_threadsafe(loop.stop)
            raise ExportError(f"Could not start Chromium at {path} for PNG/SVG export ({type(e).__name__}: {e}). "
                              f"{CHROMIUM_HINT}") from e
        self._loop = loop

    def render(self, fig, fmt: str, width: int | None, height: int | None, scale: float) -> bytes:
        opts = {"format": fmt, "scale": scale, **({"width": width} if width else {}),
                **({"height": height} if height else {})}
        with self._lock:
            if self._kaleido is None:
                self._start()
            future = asyncio.run_coroutine_threadsafe(self._kaleido.calc_fig(fig, opts=opts), self._loop)
            try:
                return future.result(TIMEOUT_S + 5)
            except Exception as e:
                self._close_locked()  # a browser that failed once is restarted on the next call
                raise ExportError(f"Rendering the figure as {fmt.upper()} failed ({type(e).__name__}: {e}).") from e

    def _close_locked(self) -> None:
        k, loop, self._kaleido, self._loop = self._kaleido, self._loop, None, None
        if k is not None and loop is not None:
            try:
                asyncio.run_coroutine_threadsafe(k.close(), loop).result(10)
            except Exception:  # noqa: BLE001 - closing a broken browser: nothing left to do
                pass
            loop.call_soon_threadsafe(loop.stop)

    def close(self) -> None:
        with self._lock:
            self._close_locked()


_RENDERER = _Renderer()
atexit.register(_RENDERER.close)


def figure_image(fig, fmt: str, width: int | None = None, height: int | None = None,
                 scale: float | None = None) -> bytes:
    """The figure as PNG or SVG bytes. Width/height default to the figure's layout (else 1000 × its height).

    Raises ExportError (a BIFError: one line that says what to do) when no Chromium is installed."""
    if fmt not in FORMATS:
        raise ExportError(f"Unknown image format {fmt!r}: choose one of {', '.join(FORMATS)}.")
    try:
        import kaleido  # noqa: F401
    except ImportError as e:
        raise ExportError("PNG/SVG export needs the kaleido package: pip install -r requirements.txt.") from e
    if browser_path() is None:
        raise ExportError(CHROMIUM_HINT)
    width = width or fig.layout.width or 1000
    height = height or fig.layout.height or 500
    return _RENDERER.render(fig, fmt, int(width), int(height), scale or (PNG_SCALE if fmt == "png" else 1))
