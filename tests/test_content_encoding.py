"""HTTP Content-Encoding as servers send it (medstream.limits.BoundedDecoder): deflate with and
without its zlib wrapper, gzip in any case, an encoding medstream does not know, corrupt and
truncated compressed bodies, and a deflate bomb. The server is tests/hostile_server.py on
127.0.0.1; the expected pixels are the array the PNG was made from."""

from __future__ import annotations

import gzip
import io
import time
import zlib

import numpy as np
import pytest
from PIL import Image as PILImage

import medstream as ms
from hostile_server import HostileServer, send
from medstream.limits import BoundedDecoder

FAST = {"retries": 2, "backoff": 0.01, "timeout": 10}


@pytest.fixture(scope="module")
def server():
    srv = HostileServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def picture() -> tuple[np.ndarray, bytes]:
    """An RGB array and its PNG file."""
    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[..., 0] = np.arange(40, dtype=np.uint8)[None, :] * 6
    rgb[..., 1] = np.arange(30, dtype=np.uint8)[:, None] * 8
    rgb[5:10, 5:20, 2] = 255
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, format="PNG")
    return rgb, buf.getvalue()


def raw_deflate(data: bytes) -> bytes:
    """Deflate without the zlib wrapper (what some servers send as 'deflate')."""
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


def serve(server: HostileServer, route: str, body: bytes, encoding: str) -> str:
    server.routes[route] = lambda h: send(h, body, ctype="image/png", Content_Encoding=encoding)
    return server.url + route


def serve_split(server: HostileServer, route: str, body: bytes, encoding: str) -> str:
    """The body's first byte alone, then (0.2 s later) the rest: two network reads."""
    def handler(h) -> None:  # noqa: ANN001
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Content-Length", str(len(body)))
        h.send_header("Content-Encoding", encoding)
        h.end_headers()
        h.wfile.write(body[:1])
        h.wfile.flush()
        time.sleep(0.2)
        h.wfile.write(body[1:])

    server.routes[route] = handler
    return server.url + route


@pytest.mark.parametrize("name,encode,encoding", [
    ("deflate-zlib", zlib.compress, "deflate"),  # RFC 9110: deflate is the zlib format
    ("deflate-raw", raw_deflate, "deflate"),     # what IIS and others send instead
    ("gzip", gzip.compress, "gzip"),
    ("x-gzip", gzip.compress, "x-gzip"),
    ("gzip-upper-case", gzip.compress, "GZIP"),
    ("identity", lambda b: b, "identity"),
])
def test_encoded_bodies_decode_to_the_picture(server, picture, name, encode, encoding):
    rgb, png = picture
    url = serve(server, f"/{name}.png", encode(png), encoding)
    image = ms.load_image(url, **FAST).result(30)
    assert np.array_equal(image.get_pixel_data(), rgb)
    assert "deflate" in server.seen(f"/{name}.png")[0]["accept-encoding"]  # it was asked for


def test_an_unsupported_encoding_is_refused_with_its_name(server, picture):
    _, png = picture
    url = serve(server, "/brotli.png", png, "br")  # never asked for: Accept-Encoding has no br
    with pytest.raises(ms.ImageLoadError, match="unsupported Content-Encoding 'br'") as err:
        ms.load_image(url, **FAST).result(30)
    assert url in str(err.value)
    assert len(server.seen("/brotli.png")) == 1  # the answer will not change: not retried


@pytest.mark.parametrize("name,body,encoding,cause", [
    ("gzip-corrupt", lambda png: gzip.compress(png)[:12] + b"\xff" * 64 + gzip.compress(png)[76:],
     "gzip", "corrupt gzip body"),
    ("gzip-not-gzip", lambda png: png, "gzip", "corrupt gzip body"),  # a plain body, mislabelled
    ("deflate-corrupt", lambda png: b"\x78\x9c" + b"\xff" * 200, "deflate", "corrupt deflate body"),
])
def test_a_corrupt_compressed_body_is_a_decode_error(server, picture, name, body, encoding,
                                                     cause):
    _, png = picture
    url = serve(server, f"/{name}.png", body(png), encoding)
    with pytest.raises(ms.DecodeError, match=cause) as err:
        ms.load_image(url, **FAST).result(30)
    assert url in str(err.value)


def test_a_truncated_gzip_body_is_named_as_such(server, picture):
    """Half a gzip stream inflates to half a PNG: the load fails naming the encoding and the
    URL, it never returns a picture."""
    _, png = picture
    body = gzip.compress(png)
    url = serve(server, "/half.png", body[: len(body) // 2], "gzip")
    with pytest.raises(ms.DecodeError, match="gzip body") as err:
        ms.load_image(url, **FAST).result(30)
    assert url in str(err.value)


def _decode_in_chunks(encoding: str, body: bytes, sizes: list[int]) -> bytes:
    """The body through BoundedDecoder in chunks of the given sizes (then the rest), as network
    reads of those sizes would feed it."""
    decoder = BoundedDecoder("test:chunks", encoding, 1024**2)
    out, at = [], 0
    for n in [*sizes, len(body)]:
        out += decoder.feed(body[at : at + n])
        at += n
    return b"".join(out)


@pytest.mark.parametrize("encoding,encode", [("gzip", gzip.compress), ("deflate", raw_deflate),
                                              ("deflate", zlib.compress)],
                         ids=["gzip", "deflate-raw", "deflate-zlib"])
@pytest.mark.parametrize("sizes", [[2], [7, 1, 3], [64]], ids=str)
def test_chunk_boundaries_do_not_matter(picture, encoding, encode, sizes):
    _, png = picture
    assert _decode_in_chunks(encoding, encode(png), sizes) == png


def test_deflate_whose_first_chunk_is_one_byte(picture):
    _, png = picture
    assert _decode_in_chunks("deflate", zlib.compress(png), [1]) == png


def test_gzip_whose_first_chunk_is_one_byte(server, picture):
    rgb, png = picture
    url = serve_split(server, "/gzip-split.png", gzip.compress(png), "gzip")
    assert np.array_equal(ms.load_image(url, **FAST).result(30).get_pixel_data(), rgb)


@pytest.mark.parametrize("encoding,encode", [("deflate", zlib.compress),
                                              ("deflate", raw_deflate)], ids=["zlib", "raw"])
def test_a_deflate_bomb_stops_at_the_budget(server, encoding, encode):
    """64 MB of zeros in about 64 kB: refused at a 4 MB budget, never inflated whole."""
    route = f"/bomb-{encode.__name__}.png"
    url = serve(server, route, encode(bytes(64 * 1024**2)), encoding)
    with pytest.raises(ms.ResourceLimitError, match="response body") as err:
        ms.load_image(url, max_bytes=4 * 1024**2, **FAST).result(60)
    assert url in str(err.value)
