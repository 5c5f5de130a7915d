#!/usr/bin/python3
"""Write the seed corpus of fuzz-image (corpus/image/): small JPEGs
(baseline, progressive, grey, 4:2:0 and 4:4:4, CMYK, EXIF-oriented
and a broken EXIF block) and PNGs (RGB, RGBA, grey,
palette, 16-bit, interlaced), WebP (lossy, lossless, with alpha) and,
when heif-enc (Debian's libheif-examples) is installed, HEIC and AVIF,
plus headers claiming 20000x20000 and files cut short. Needs PIL
(python3-pil). Usage: make-image-corpus.py OUTDIR"""
import io
import os
import shutil
import struct
import subprocess
import sys
import zlib

from PIL import Image


def picture(mode, w, h):
    im = Image.new("RGB", (w, h))
    im.putdata([((x * 255) // max(w - 1, 1), (y * 255) // max(h - 1, 1), (x * y) % 256)
                for y in range(h) for x in range(w)])
    return im.convert(mode)


def save(out, name, im, fmt, **kw):
    b = io.BytesIO()
    im.save(b, fmt, **kw)
    open(os.path.join(out, name), "wb").write(b.getvalue())
    return b.getvalue()


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    j = save(out, "rgb.jpg", picture("RGB", 19, 13), "JPEG", quality=80)
    save(out, "progressive.jpg", picture("RGB", 17, 9), "JPEG", progressive=True)
    save(out, "grey.jpg", picture("L", 8, 8), "JPEG")
    save(out, "444.jpg", picture("RGB", 9, 7), "JPEG", subsampling=0)
    save(out, "cmyk.jpg", picture("CMYK", 8, 8), "JPEG")
    open(os.path.join(out, "truncated.jpg"), "wb").write(j[: len(j) // 2])
    ex = Image.Exif()
    ex[0x0112] = 6
    e = save(out, "exif6.jpg", picture("RGB", 12, 7), "JPEG", exif=ex.tobytes())
    # The same with IFD0's offset pointing past the segment.
    k = e.index(b"Exif\x00\x00") + 6
    open(os.path.join(out, "exif-bad.jpg"), "wb").write(e[:k + 4] + b"\xff\xff\x00\x00" + e[k + 8:])
    p = save(out, "rgb.png", picture("RGB", 11, 5), "PNG")
    save(out, "rgba.png", picture("RGBA", 7, 6), "PNG")
    save(out, "grey.png", picture("L", 5, 9), "PNG")
    save(out, "palette.png", picture("RGB", 6, 6).convert("P"), "PNG")
    save(out, "grey16.png", picture("I", 4, 4).convert("I;16"), "PNG")
    save(out, "interlaced.png", picture("RGB", 10, 10), "PNG", interlace=1)
    open(os.path.join(out, "truncated.png"), "wb").write(p[: len(p) - 20])

    w = save(out, "lossy.webp", picture("RGB", 13, 9), "WEBP", quality=80)
    save(out, "lossless.webp", picture("RGBA", 7, 5), "WEBP", lossless=True)
    open(os.path.join(out, "truncated.webp"), "wb").write(w[: len(w) * 2 // 3])
    if shutil.which("heif-enc"):
        src = os.path.join(out, "rgb.png")
        for name, flags in (("tiny.heic", []), ("tiny.avif", ["-A"])):
            subprocess.run(["heif-enc", "-q", "60"] + flags + [src, "-o", os.path.join(out, name)],
                           check=True, stdout=subprocess.DEVNULL)

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    open(os.path.join(out, "huge.png"), "wb").write(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 20000, 20000, 3) + \
        b"\x01\x11\x00\x02\x11\x01\x03\x11\x01"
    open(os.path.join(out, "huge.jpg"), "wb").write(b"\xff\xd8" + sof + b"\xff\xd9")


if __name__ == "__main__":
    main()
