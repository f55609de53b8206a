"""Pictures inside the report: cells, Grad-CAM overlays and figures as ``data:`` URIs."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

# Cell pictures are embedded at this size (px): enough to see a nucleus at the page's
# thumbnail size, small enough that a gallery of hundreds of cells stays light.
THUMBNAIL = 96
JPEG_QUALITY = 85


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def thumbnail_uri(rgb: np.ndarray, size: int = THUMBNAIL) -> str:
    """A ``(S, S, 3)`` uint8 picture as a JPEG ``data:`` URI, at most ``size`` px wide."""
    image = Image.fromarray(rgb)
    if max(image.size) > size:
        image = image.resize((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return data_uri(buffer.getvalue(), "image/jpeg")


def file_uri(path: str | Path) -> str | None:
    """A PNG file (a figure an evaluation wrote) as a ``data:`` URI; None where it is absent."""
    path = Path(path)
    return data_uri(path.read_bytes(), "image/png") if path.is_file() else None
