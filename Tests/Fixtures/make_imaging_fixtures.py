#!/usr/bin/env python3
"""Makes the Imaging fixtures: test images in every variant the decoder must handle, the pixels OpenCV
reads from them, and OpenCV / Ultralytics resize and letterbox results.

Run from the repository root with the packages of requirements.txt (and ultralytics for the letterbox):
    python Tests/Fixtures/make_imaging_fixtures.py
Everything is written to Tests/Fixtures/imaging/ and is deterministic (fixed seeds), so rerunning it gives the
same bytes for the same package versions. Expected pixels are stored as PNG (RGB); the Swift PNG decoder that
reads them is itself checked against OpenCV on the png-* inputs.
"""
import io
import json
import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import cv2
import numpy as np
import png  # pypng: interlaced and low-bit-depth PNGs
from PIL import Image

OUT = Path(__file__).resolve().parent / "imaging"
HERE = Path(__file__).resolve().parent


def photo(w, h, seed):
    """A smooth, textured, photo-like RGB image (uint8, H×W×3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 128 + 100 * np.sin(x / (w / 3.1) + 0.3) * np.cos(y / (h / 2.3))
    g = 128 + 90 * np.cos((x + y) / (w / 4.7))
    b = 60 + 150 * (x / max(w - 1, 1)) * (y / max(h - 1, 1))
    img = np.stack([r, g, b], -1) + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def save_expected(name, rgb):
    cv2.imwrite(str(OUT / "expected" / f"{name}.png"), np.ascontiguousarray(rgb[..., ::-1]))


def exif_orientation(value, big_endian=False):
    """A minimal EXIF APP1 payload: 'Exif\\0\\0' + TIFF header + IFD0 with one SHORT orientation entry."""
    e = ">" if big_endian else "<"
    tiff = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8)
    tiff += struct.pack(e + "H", 1) + struct.pack(e + "HHI", 0x0112, 3, 1) + struct.pack(e + "HH", value, 0)
    tiff += struct.pack(e + "I", 0)
    return b"Exif\x00\x00" + tiff


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def main():
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "inputs").mkdir(parents=True)
    (OUT / "expected").mkdir()
    manifest = {"opencv": cv2.__version__, "decode": [], "invalid": [], "resize": [], "letterbox": []}
    base = photo(61, 47, seed=1)  # odd sizes: every MCU edge case of 4:2:0
    pil = Image.fromarray(base)

    def add(name, data, note):
        path = OUT / "inputs" / name
        path.write_bytes(data)
        bgr = cv2.imread(str(path))
        assert bgr is not None, f"OpenCV cannot read {name}"
        save_expected(name, bgr[..., ::-1])
        manifest["decode"].append({"file": name, "width": bgr.shape[1], "height": bgr.shape[0], "note": note})

    def pil_bytes(image, **kw):
        buf = io.BytesIO()
        image.save(buf, **kw)
        return buf.getvalue()

    # JPEG: chroma subsamplings, progressive, grey, CMYK (Adobe, inverted), YCCK, restart markers.
    add("jpeg-420.jpg", pil_bytes(pil, format="JPEG", quality=90, subsampling=2), "baseline 4:2:0")
    add("jpeg-422.jpg", pil_bytes(pil, format="JPEG", quality=90, subsampling=1), "baseline 4:2:2")
    add("jpeg-444.jpg", pil_bytes(pil, format="JPEG", quality=90, subsampling=0), "baseline 4:4:4")
    add("jpeg-progressive.jpg", pil_bytes(pil, format="JPEG", quality=85, progressive=True), "progressive 4:2:0")
    add("jpeg-gray.jpg", pil_bytes(pil.convert("L"), format="JPEG", quality=90), "grayscale")
    cmyk = pil.convert("CMYK")
    add("jpeg-cmyk.jpg", pil_bytes(cmyk, format="JPEG", quality=90), "CMYK with Adobe marker")
    tool = Path(tempfile.mkdtemp()) / "cmyk_to_ycck"
    subprocess.run(["gcc", "-O1", "-o", str(tool), str(HERE / "tools" / "cmyk_to_ycck.c"), "-ljpeg"], check=True)
    ycck = subprocess.run([str(tool), "61", "47"], input=np.asarray(cmyk).tobytes(), capture_output=True, check=True)
    add("jpeg-ycck.jpg", ycck.stdout, "YCCK (Adobe transform 2)")
    ok, restart = cv2.imencode(".jpg", base[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 80, cv2.IMWRITE_JPEG_RST_INTERVAL, 2])
    add("jpeg-restart.jpg", restart.tobytes(), "restart markers every 2 MCUs")
    big = photo(1023, 769, seed=2)  # big enough to exercise libjpeg's multi-row buffering
    add("jpeg-large.jpg", pil_bytes(Image.fromarray(big), format="JPEG", quality=92), "1023×769 4:2:0")

    # EXIF orientation 1–8, little- and big-endian TIFF headers; a non-EXIF APP1 first (XMP) is ignored.
    small = Image.fromarray(photo(23, 13, seed=3))
    for value in range(1, 9):
        add(f"exif-{value}.jpg", pil_bytes(small, format="JPEG", quality=95, exif=exif_orientation(value)),
            f"EXIF orientation {value} (II)")
    add("exif-6-mm.jpg", pil_bytes(small, format="JPEG", quality=95, exif=exif_orientation(6, big_endian=True)),
        "EXIF orientation 6 (MM)")
    add("exif-9.jpg", pil_bytes(small, format="JPEG", quality=95, exif=exif_orientation(9)),
        "EXIF orientation 9 (invalid: left alone)")

    # PNG: every colour type and bit depth OpenCV maps to 8-bit BGR.
    add("png-rgb.png", pil_bytes(pil, format="PNG"), "RGB 8-bit")
    rgba = np.dstack([base, photo(61, 47, seed=4)[..., 0]])
    add("png-rgba.png", pil_bytes(Image.fromarray(rgba, "RGBA"), format="PNG"), "RGBA 8-bit (alpha stripped)")
    add("png-gray.png", pil_bytes(pil.convert("L"), format="PNG"), "gray 8-bit")
    add("png-gray-alpha.png", pil_bytes(Image.fromarray(rgba, "RGBA").convert("LA"), format="PNG"), "gray+alpha 8-bit")
    pal = pil.convert("P", palette=Image.Palette.ADAPTIVE, colors=37)
    add("png-palette.png", pil_bytes(pal, format="PNG"), "palette 37 colours")
    add("png-palette-trns.png", pil_bytes(pal, format="PNG", transparency=3), "palette with tRNS")
    rgb16 = (base.astype(np.uint16) * 257 + np.arange(61, dtype=np.uint16)[None, :, None] * 3)
    ok, enc = cv2.imencode(".png", rgb16[..., ::-1])
    add("png-rgb16.png", enc.tobytes(), "RGB 16-bit")
    buf = io.BytesIO()
    png.Writer(61, 47, greyscale=True, bitdepth=16).write(buf, (rgb16[..., 1]).tolist())
    add("png-gray16.png", buf.getvalue(), "gray 16-bit")
    for depth in (1, 2, 4):
        buf = io.BytesIO()
        rows = (np.asarray(pil.convert("L")) >> (8 - depth)).tolist()
        png.Writer(61, 47, greyscale=True, bitdepth=depth).write(buf, rows)
        add(f"png-gray{depth}.png", buf.getvalue(), f"gray {depth}-bit")
    buf = io.BytesIO()
    png.Writer(61, 47, greyscale=False, interlace=True).write(buf, base.reshape(47, -1).tolist())
    add("png-interlaced.png", buf.getvalue(), "Adam7 interlaced RGB 8-bit")
    buf = io.BytesIO()
    rgba16 = np.dstack([rgb16, np.full((47, 61), 40000, np.uint16)])
    png.Writer(61, 47, greyscale=False, alpha=True, bitdepth=16, interlace=True).write(buf, rgba16.reshape(47, -1).tolist())
    add("png-interlaced-rgba16.png", buf.getvalue(), "Adam7 interlaced RGBA 16-bit")
    # An eXIf chunk: recorded as OpenCV reads it (this OpenCV version's PNG reader decides whether it applies).
    raw = pil_bytes(small, format="PNG")
    exif_chunk = png_chunk(b"eXIf", exif_orientation(6)[6:])
    add("png-exif-6.png", raw[:33] + exif_chunk + raw[33:], "PNG with eXIf orientation 6")

    # Bad input: each must be refused with the named error, never crash or hang.
    def bad(name, data, error, note):
        (OUT / "inputs" / name).write_bytes(data)
        try:
            opencv = "reads it" if cv2.imread(str(OUT / "inputs" / name)) is not None else "returns None"
        except cv2.error as e:
            opencv = "raises: " + str(e).strip().splitlines()[-1]
        manifest["invalid"].append({"file": name, "error": error, "note": note, "opencv": opencv})

    baseline = (OUT / "inputs" / "jpeg-large.jpg").read_bytes()
    bad("empty.jpg", b"", "empty", "zero-byte file")
    bad("text.jpg", b"this is not an image\n" * 10, "unrecognized", "a text file named .jpg")
    bad("truncated.jpg", baseline[: len(baseline) * 6 // 10], "truncated", "JPEG cut at 60%")
    bad("header-only.jpg", baseline[:400], "truncated", "JPEG cut inside the headers")
    rng = np.random.default_rng(7)
    bad("random-after-signature.jpg", b"\xff\xd8\xff" + rng.integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        "corrupt", "random bytes behind a JPEG signature")
    sof = baseline.find(b"\xff\xc0")
    bomb = bytearray(baseline)
    bomb[sof + 5:sof + 9] = struct.pack(">HH", 65500, 65500)
    bad("bomb.jpg", bytes(bomb), "tooLarge", "JPEG header claiming 65500×65500")
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 300001)
    bad("bomb.png", b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b""),
        "tooLarge", "PNG header claiming 100000×100000")
    good_png = (OUT / "inputs" / "png-rgb.png").read_bytes()
    corrupt = bytearray(good_png)
    idat_at = good_png.find(b"IDAT")
    corrupt[idat_at + 40] ^= 0xFF
    bad("bad-crc.png", bytes(corrupt), "corrupt", "PNG with a corrupt IDAT chunk (CRC mismatch)")
    bad("truncated.png", good_png[: len(good_png) // 2], "truncated", "PNG cut in half")
    bad("image.bmp", cv2.imencode(".bmp", base)[1].tobytes(), "unsupportedFormat", "a BMP file")

    # cv2.resize INTER_LINEAR on uint8: downscale, upscale, non-integer ratios, exact halving, 1-pixel edges.
    sources = {"photo-61x47": base, "noise-40x30": rng.integers(0, 256, (30, 40, 3), dtype=np.uint8),
               "photo-200x150": photo(200, 150, seed=5)}
    for name, img in sources.items():
        save_expected(f"resize-src-{name}", img)
    targets = {"photo-61x47": [(30, 23), (122, 94), (64, 48), (13, 7), (1, 1), (61, 1), (1, 47), (97, 31), (640, 493)],
               "noise-40x30": [(20, 15), (80, 60), (41, 29), (7, 5), (33, 77)],
               "photo-200x150": [(100, 75), (64, 48), (199, 149), (640, 480), (133, 100), (50, 38)]}
    for name, sizes in targets.items():
        for w, h in sizes:
            out = cv2.resize(np.ascontiguousarray(sources[name][..., ::-1]), (w, h), interpolation=cv2.INTER_LINEAR)
            key = f"resize-{name}-to-{w}x{h}"
            save_expected(key, out[..., ::-1])
            manifest["resize"].append({"source": f"resize-src-{name}", "width": w, "height": h, "expected": key})

    # Ultralytics LetterBox (the real class), pixels on small images and placements on real photo sizes.
    from ultralytics.data.augment import LetterBox
    import ultralytics
    manifest["ultralytics"] = ultralytics.__version__
    configs = [dict(new_shape=(96, 96), auto=True, stride=32), dict(new_shape=(96, 96), auto=False),
               dict(new_shape=(128, 128), auto=False, center=False), dict(new_shape=(64, 96), auto=False, scaleup=False)]
    for name, img in sources.items():
        for i, cfg in enumerate(configs):
            lb = LetterBox(**cfg)
            out = lb(image=np.ascontiguousarray(img[..., ::-1]))
            key = f"letterbox-{name}-{i}"
            save_expected(key, out[..., ::-1])
            manifest["letterbox"].append({"source": f"resize-src-{name}", "config": cfg_json(cfg), "expected": key})
    placements = []
    for w, h in [(810, 1080), (1280, 720), (1920, 1080), (640, 480), (1280, 960), (451, 300), (4000, 3000), (17, 1000),
                 (1000, 3), (333, 777), (1024, 1024), (500, 375)]:
        for cfg in [dict(new_shape=(640, 640), auto=True, stride=32), dict(new_shape=(1024, 1024), auto=False, center=False),
                    dict(new_shape=(640, 640), auto=False)]:
            p = LetterBox(**cfg).get_params({"img": np.zeros((h, w, 3), np.uint8)})
            placements.append({"width": w, "height": h, "config": cfg_json(cfg), "ratio": p["ratio"][0],
                               "resized": list(p["new_unpad"]), "top": p["top"], "bottom": p["bottom"],
                               "left": p["left"], "right": p["right"]})
    manifest["placements"] = placements
    (OUT / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {len(manifest['decode'])} decode, {len(manifest['invalid'])} invalid, {len(manifest['resize'])} resize, "
          f"{len(manifest['letterbox'])} letterbox, {len(placements)} placement fixtures to {OUT}")


def cfg_json(cfg):
    full = dict(new_shape=None, auto=False, scaleup=True, center=True, stride=32)
    full.update(cfg)
    return {"height": full["new_shape"][0], "width": full["new_shape"][1], "auto": full["auto"],
            "scaleUp": full["scaleup"], "center": full["center"], "stride": full["stride"]}


if __name__ == "__main__":
    main()
