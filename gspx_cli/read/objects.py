"""One object of a store fetched with one range-less GET, streamed (s3fs and gcsfs underneath).

fsspec's files first ask for the object's details (a HEAD) and then read it in ranged GETs; a walk
already has each object's identity from its listing, so the object is fetched in one request, read
as it arrives, and the identity of what was read is taken from the GET's own answer.
"""


def sync(loop, func, *args):
    """func(*args) run on the store library's event loop, from this thread (fsspec's own bridge;
    imported here, not at start-up: fsspec comes with the s3 and gcs extras only)."""
    from fsspec.asyn import sync as run

    return run(loop, func, *args)


class Streamed:
    """A binary file reading an answer's body as it arrives; .details: the object's identity fields."""

    def __init__(self, loop, read, release, details):
        self._loop = loop
        self._read = read  # async read(n) of the body; n < 0: the rest
        self._release = release  # async or plain: gives the connection back
        self.details = details
        self._closed = False

    def read(self, n=-1):
        if n is None or n < 0:
            chunks = []
            while True:
                chunk = sync(self._loop, self._read, 1 << 20)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        return sync(self._loop, self._read, n)

    def close(self):
        if not self._closed:
            self._closed = True
            sync(self._loop, _call, self._release)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


async def _call(release):
    result = release()
    if hasattr(result, "__await__"):
        await result


def s3_get(fs, path):
    """bucket/key of an s3fs filesystem: one get_object, its body streamed."""
    bucket, key, version = fs.split_path(path)
    extra = {"VersionId": version} if version else {}
    answer = fs.call_s3("get_object", Bucket=bucket, Key=key, **extra)
    body = answer["Body"]
    details = {"ETag": answer.get("ETag"), "size": answer.get("ContentLength")}
    return Streamed(fs.loop, body.read, body.close, details)


def gcs_get(fs, path):
    """bucket/name of a gcsfs filesystem: one GET of its media, streamed."""
    return sync(fs.loop, _gcs_open, fs, path)


async def _gcs_open(fs, path):
    from gcsfs.retry import validate_response

    await fs._set_session()
    url = fs.url(path)
    answer = await fs.session.get(url=url, headers=fs._get_headers(None), timeout=fs.requests_timeout)
    if answer.status >= 400:
        try:
            validate_response(answer.status, await answer.read(), url)
        finally:
            answer.release()
    headers = answer.headers
    size = headers.get("x-goog-stored-content-length") or headers.get("content-length")
    generation = headers.get("x-goog-generation")
    # without both, what was read is known by the listing's identity (the reader falls back to it)
    details = {"generation": generation, "size": int(size)} if generation and size else None
    return Streamed(fs.loop, answer.content.read, answer.release, details)
