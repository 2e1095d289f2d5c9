"""Non-normative: decoded images as files: PNG and the raw planar layout of spec clause 11.4,
read and written in one place, and the difference image of clause 11.5.4."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def png_bytes(image) -> bytes:
    """Informative: a (3, H, W) uint8 image as an 8-bit RGB PNG with fixed settings (zlib level 9,
    no ancillary chunks, no timestamp), so that the same samples always give the same bytes."""
    from PIL import Image

    hwc = np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(1, 2, 0))
    buf = io.BytesIO()
    Image.fromarray(hwc).save(buf, format="PNG", compress_level=9, optimize=False)
    return buf.getvalue()


class OutputError(ValueError):
    """A decoder output that cannot be read as the samples of clause 11.4."""


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_header(path) -> tuple[int, int, int, int]:
    """(width, height, bit depth, colour type) from a PNG's IHDR chunk (the first 33 bytes), read
    before anything is decoded; OutputError if the file does not start like a PNG."""
    name = Path(path).name
    try:
        with open(path, "rb") as f:
            head = f.read(33)
    except OSError as exc:
        raise OutputError(f"{name} cannot be read ({exc.strerror or exc})") from None
    if head[:8] != PNG_SIGNATURE:
        raise OutputError(f"{name} is not a PNG (no PNG signature)")
    if len(head) < 33 or head[8:16] != b"\x00\x00\x00\x0dIHDR":
        raise OutputError(f"{name} is not a PNG (no IHDR chunk first)")
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return width, height, head[24], head[25]


def read_png(path, width: int | None = None, height: int | None = None) -> np.ndarray:
    """An 8-bit RGB PNG as (3, H, W) uint8; anything else raises OutputError.

    With `width` and `height`, the header's dimensions are checked before the image is decoded,
    so that a decoder's output costs at most the memory of the expected image (a 12000x12000 PNG
    is refused from its first 33 bytes)."""
    import warnings

    from PIL import Image

    name = Path(path).name
    w, h, depth, colour = png_header(path)
    if width is not None and (w, h) != (width, height):
        raise OutputError(f"{name} is {w}x{h}, expected {width}x{height} (from its PNG header; not decoded)")
    if (depth, colour) != (8, 2):
        kinds = {0: "grey", 2: "RGB", 3: "palette", 4: "grey with alpha", 6: "RGB with alpha"}
        raise OutputError(f"{name} is a {depth}-bit {kinds.get(colour, f'colour type {colour}')} PNG, "
                          f"expected 8-bit RGB (colour type 2)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")   # no DecompressionBombWarning: the size is checked above
            with Image.open(path) as im:
                if im.format != "PNG":
                    raise OutputError(f"{name} is {im.format or 'not an image'}, not PNG")
                if im.mode != "RGB":
                    raise OutputError(f"{name} is a PNG of mode {im.mode}, expected 8-bit RGB")
                im.load()
                return np.ascontiguousarray(np.asarray(im, dtype=np.uint8).transpose(2, 0, 1))
    except OutputError:
        raise
    except Exception as exc:  # Pillow raises many types for damaged files
        raise OutputError(f"{Path(path).name} cannot be read as PNG ({exc.__class__.__name__}: {exc})") from None


def read_raw(path, width: int, height: int) -> np.ndarray:
    """Clause 11.4 raw planar bytes (3 x H x W uint8) as (3, H, W); a wrong size raises OutputError
    (from the file's size, before it is read)."""
    size = Path(path).stat().st_size
    if size != 3 * width * height:
        raise OutputError(f"{Path(path).name} has {size} bytes, clause 11.4 planar {width}x{height} "
                          f"needs {3 * width * height}")
    data = Path(path).read_bytes()
    if len(data) != size:
        raise OutputError(f"{Path(path).name} changed while it was read")
    return np.frombuffer(data, dtype=np.uint8).reshape(3, height, width).copy()


def read_output(path, width: int, height: int) -> np.ndarray:
    """A decoder output: .rgb is raw planar (clause 11.4), anything else PNG."""
    if Path(path).suffix.lower() == ".rgb":
        return read_raw(path, width, height)
    return read_png(path, width, height)


def difference_image(expected: np.ndarray, got: np.ndarray) -> np.ndarray:
    """Informative (clause 11.5.4): (3, H, W) uint8: the golden image dimmed to a quarter of its
    brightness in grey, and every differing sample position in red, brighter for larger differences."""
    exp = expected.astype(np.int32)
    diff = np.abs(got.astype(np.int32) - exp).max(axis=0)
    grey = (exp.sum(axis=0) // 12).astype(np.uint8)
    out = np.stack([grey, grey, grey])
    mask = diff > 0
    if mask.any():
        top = int(diff.max())
        red = 128 + (127 * diff[mask]) // top
        out[0][mask] = red.astype(np.uint8)
        out[1][mask] = 0
        out[2][mask] = 0
    return out


