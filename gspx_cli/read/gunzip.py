"""gzip streams inflated piece by piece, every member, for the reader (read/reader.py)."""

import zlib

GZIP_OUT_BYTES = 64 * 1024  # decompressed bytes per piece (cache-sized); a gzip bomb is never inflated whole


def gunzip(chunks):
    """The decompressed bytes of a gzip stream (every member), at most GZIP_OUT_BYTES per piece.

    Not gzip.GzipFile: every byte before damage is yielded first, and a truncated or corrupt stream
    then raises EOFError, so the lines before it are kept and the problem is reported at the line reached.
    """
    z = zlib.decompressobj(wbits=31)  # 31: expect the gzip header and trailer
    in_member = False
    try:
        for data in chunks:
            while True:
                if z.eof or not in_member:
                    data = data.lstrip(b"\0")  # zero padding after a member, as gzip allows
                    if not data:
                        break
                    if z.eof:
                        z = zlib.decompressobj(wbits=31)
                    in_member = True
                out = z.decompress(data, GZIP_OUT_BYTES)
                if out:
                    yield out
                if z.eof:  # end of a member: another member may follow in what is left
                    in_member = False
                    data = z.unused_data
                    continue
                data = z.unconsumed_tail
                if not data and len(out) < GZIP_OUT_BYTES:  # a full piece may leave output inside zlib
                    break
        if in_member:
            raise EOFError("gzip data ends early (truncated file?)")
    except zlib.error as exc:
        raise EOFError(f"not gzip data, or corrupt ({exc})") from None
