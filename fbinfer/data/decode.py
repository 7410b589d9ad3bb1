"""Reading images that someone else supplied: regular files only, bounded in bytes and pixels,
and every failure one line naming the file."""
from __future__ import annotations

import io
import stat
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from fbinfer.errors import FbinferError, first_line

MAX_BYTES = 64 << 20  # an image file above 64 MiB is refused before it is read
MAX_PIXELS = 40_000_000  # width x height; catalogue photos are far below, decompression bombs far above


def read_image_file(path: Path, name: str) -> bytes:
    """The bytes of an image file; refuses devices, FIFOs and folders (``/dev/zero`` would never
    end) and files over ``MAX_BYTES``."""
    try:
        st = path.stat()
    except (OSError, ValueError) as e:
        raise FbinferError(f"{name}: cannot read image ({getattr(e, 'strerror', None) or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise FbinferError(f"{name}: not a regular file")
    if st.st_size > MAX_BYTES:
        raise FbinferError(f"{name}: image file is {st.st_size:,} bytes, over the limit of {MAX_BYTES:,}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise FbinferError(f"{name}: cannot read image ({e.strerror})") from None


def decode_image(blob: bytes, name: str) -> Image.Image:
    """Decode to RGB; the header's size is checked against ``MAX_PIXELS`` before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(blob))
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise FbinferError(f"{name}: image is {w} x {h} pixels, over the limit of {MAX_PIXELS:,} "
                                   "(fbinfer.data.decode.MAX_PIXELS)")
            return im.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise FbinferError(f"{name}: image declares too many pixels, over the limit of {MAX_PIXELS:,} "
                           "(fbinfer.data.decode.MAX_PIXELS)") from None
    except UnidentifiedImageError:
        raise FbinferError(f"{name}: not a readable image (unknown image format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise FbinferError(f"{name}: not a readable image ({type(e).__name__}: {first_line(e)})") from None
