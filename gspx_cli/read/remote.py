"""Object-store inputs (CLI.md "Inputs as archived"): s3:// and gs:// URLs read through fsspec.

s3fs and gcsfs are optional extras (`pip install 'gspx-cli[s3]'`, `[gcs]`), imported only when a URL
is given, so the core install and its start-up stay as they were. A prefix is walked as a directory
is (archives.walk): one "folder" listed at a time, oldest first; each object is an input of its own,
named by its URL, with its identity (ETag or generation, and size) for the checkpoint.
"""

import io
import os
import posixpath
from collections import deque

from gspx_cli.read import archives, objects
from gspx_cli.errors import ConfigError

# URL scheme -> (fsspec protocol, the module that implements it, the extra that installs it)
_SCHEMES = {"s3": ("s3", "s3fs", "s3"), "gs": ("gcs", "gcsfs", "gcs"), "gcs": ("gcs", "gcsfs", "gcs")}
# Bytes fetched per ranged GET while an object of a store without a streamed GET here is read (not
# s3://, not gs://): a big one never sits whole in memory. s3:// and gs:// objects are one GET each.
READ_BLOCK_BYTES = 8 * 1024 * 1024
# Objects downloaded ahead of the reader, each whole, in the background: a request to a store takes
# tens of milliseconds, and one at a time a prefix of small objects is read at the store's latency
# (7 ms an object against a local server, benchmarks/buckets.py). Only objects up to
# PREFETCH_MAX_BYTES: at most PREFETCH_OBJECTS x that is held; a bigger one is streamed at its turn.
PREFETCH_OBJECTS = 8
PREFETCH_MAX_BYTES = 4 * 1024 * 1024
# --endpoint-url (CLI.md), else AWS_ENDPOINT_URL: set once by the command line before a run, like
# shapes.set_error_dumps, because the reader thread opens the objects.
_endpoint_url = None
_filesystems = {}  # protocol -> the filesystem of this run (one connection pool per store)
_kinds = {}  # URL -> what check() found there (an object's info, or None for a prefix): walk() asks once
# The stores' libraries log their retries and fallbacks with tracebacks; with no handler of their own
# Python prints those on stderr. gspx says what failed in one line instead (explain).
_QUIET_LOGGERS = ("s3fs", "gcsfs", "fsspec", "aiobotocore", "botocore", "google")
# exception class names (anywhere in the MRO) that mean the store could not be reached at all
_UNREACHABLE = {"EndpointConnectionError", "ConnectTimeoutError", "ClientConnectorError", "ClientConnectionError",
                "ServerTimeoutError", "ConnectionError", "TimeoutError"}


def is_url(path):
    """True for an object-store URL gspx reads (s3://, gs://)."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.lower() in _SCHEMES


def set_endpoint_url(url):
    """--endpoint-url: the S3-compatible endpoint of s3:// inputs (None: AWS_ENDPOINT_URL, else AWS)."""
    global _endpoint_url
    if (url or None) != _endpoint_url:
        _endpoint_url = url or None
        _filesystems.pop("s3", None)
        _kinds.clear()


def filesystem(url):
    """The fsspec filesystem of a URL's scheme; ConfigError (exit 2) naming the extra when it is not installed."""
    protocol, module, extra = _SCHEMES[url.partition("://")[0].lower()]
    fs = _filesystems.get(protocol)
    if fs is not None:
        return fs
    try:
        import fsspec

        __import__(module)
    except ImportError:
        raise ConfigError(f"reading {url.partition('://')[0]}:// needs {module}: pip install 'gspx-cli[{extra}]'",
                          key=url) from None
    # No listing cache: a walk lists each folder once, and a cache would keep every listing of a
    # million-object prefix in memory. A fresh instance: its settings are this run's.
    options = {"use_listings_cache": False, "skip_instance_cache": True}
    if protocol == "s3":
        endpoint = _endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            options["endpoint_url"] = endpoint
    fs = _filesystems[protocol] = fsspec.filesystem(protocol, **options)
    return fs


def check(urls):
    """Look at each URL once before anything is sent: ConfigError (exit 2), one line, when its store
    cannot be reached (no credentials, no such bucket, access denied, no such prefix)."""
    import logging  # ~3 ms of start-up: only when there are URLs

    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(handler, logging.NullHandler) for handler in logger.handlers):
            logger.addHandler(logging.NullHandler())
    for url in dict.fromkeys(urls):
        fs = filesystem(url)
        try:
            _kinds[url] = _look(fs, url)
        except Exception as exc:  # noqa: BLE001 - botocore, google-auth, aiohttp: each has its own kinds
            raise ConfigError(explain(exc), key=url) from None


def _look(fs, url):
    """What is at url: None for a prefix with objects under it, else the object's info (raising when
    there is nothing). A prefix costs one listing of one key on S3, not a HEAD (a key that is not there)."""
    if _is_s3(fs):
        bucket, _, key = _bare(url).partition("/")
        key = key.strip("/")
        found = fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=f"{key}/" if key else "", MaxKeys=1)
        if found.get("KeyCount", len(found.get("Contents", ()))):
            return None
    info = fs.info(_bare(url))
    return None if info.get("type") == "directory" else info


def explain(exc):
    """One line for people of why a store refused or failed: never a traceback."""
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    if name in ("NoCredentialsError", "PartialCredentialsError", "DefaultCredentialsError"):
        return (f"no credentials for the object store ({text}); set them as its library looks for them "
                "(environment, profile, instance role)")
    if isinstance(exc, FileNotFoundError):
        # gcsfs says only the path of its request (b/BUCKET/o), which means nothing to people; S3 says why
        return "no such bucket or prefix" + (f" ({text})" if " " in text else "")
    if isinstance(exc, PermissionError):
        return f"access denied ({text})"
    if _UNREACHABLE.intersection(kind.__name__ for kind in type(exc).__mro__):
        return f"cannot reach the object store ({text})"
    return f"the object store refused: {name}: {text}"


def walk(url, window=None, passed=None):
    """Yield (url, problem, identity) per object to read under url, oldest first (archives.walk;
    window and passed: the folders and objects passed over by date, and their counts)."""
    fs = filesystem(url)
    try:
        info = _kinds.pop(url) if url in _kinds else _look(fs, url)
    except Exception as exc:  # noqa: BLE001 - said at the URL, as a missing file is
        yield url, explain(exc), None
        return
    if info is not None:  # one object, named as typed: read whatever its name
        yield url, None, identity(info)
        return

    def listing(folder):
        try:
            entries = fs.ls(_bare(folder), detail=True)
        except Exception as exc:  # noqa: BLE001 - an OSError to the walk: "cannot open" at that folder
            raise OSError(explain(exc)) from None
        found = []
        itself = _bare(folder).rstrip("/")
        for entry in entries:
            if entry["name"].rstrip("/") == itself:
                continue  # the folder's own "folder/" object (GCS console's Create folder): gcsfs lists it inside
            name = posixpath.basename(entry["name"].rstrip("/"))
            is_dir = entry.get("type") == "directory"
            if name and (is_dir or archives.is_archive_name(name)):
                found.append((archives.order_key(name), is_dir, None if is_dir else identity(entry)))
        found.sort(key=lambda item: item[:2])
        return found

    yield from archives.walk(url.rstrip("/"), listing, lambda folder, name: f"{folder}/{name}", window, passed)


def prefetched(walk, settled=None, ahead=PREFETCH_OBJECTS):
    """The walk's items as (url, problem, identity, opener), in its order: opener() gives the object
    open for reading (the next `ahead` small ones are downloaded meanwhile), None for one that
    settled(url, identity) says needs no reading."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(ahead, thread_name_prefix="gspx-fetch")
    window = deque()
    try:
        for url, problem, identity in walk:
            if problem is None and identity is not None and settled is not None and settled(url, identity):
                opener = None
            elif problem is None and identity is not None and identity["size"] <= PREFETCH_MAX_BYTES:
                opener = pool.submit(_fetch, url).result
            else:
                opener = _opener(url, identity)
            window.append((url, problem, identity, opener))
            if len(window) > ahead:
                yield window.popleft()
        while window:
            yield window.popleft()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)  # a stop: what was not needed is not fetched


class _Fetched(io.BytesIO):
    """A whole object in memory, with the details its store gave when it was opened."""

    def __init__(self, data, details):
        super().__init__(data)
        self.details = details


def _fetch(url):
    with open_object(url) as fh:
        return _Fetched(fh.read(), getattr(fh, "details", None))


def _opener(url, identity):
    size = identity["size"] if identity else None
    return lambda: open_object(url, size=size)


def open_object(url, size=None):
    """A binary file object reading url, with the object's identity in .details when the store says
    it: one range-less GET, streamed, on s3:// and gs:// (the listing already gave the identity, so no
    HEAD); elsewhere fsspec's file, size (from the listing) sparing it a HEAD too."""
    fs = filesystem(url)
    if _is_s3(fs):
        return objects.s3_get(fs, _bare(url))
    if _is_gcs(fs):
        return objects.gcs_get(fs, _bare(url))
    options = {"size": size} if size is not None else {}
    return fs.open(_bare(url), "rb", block_size=READ_BLOCK_BYTES, cache_type="readahead", **options)


def _is_s3(fs):
    return type(fs).__module__.startswith("s3fs.")


def _is_gcs(fs):
    return type(fs).__module__.startswith("gcsfs.")


def identity(info):
    """An object's identity for the checkpoint: {"size", "version"} from a listing or an open file's details."""
    # generation first: a GCS object's etag also changes with its metadata (labels, storage class)
    for field in ("generation", "ETag", "etag"):
        value = info.get(field)
        if value:
            return {"size": int(info.get("size") or 0), "version": f"{field.lower()}:{value}"}
    # a store that keeps no version (fsspec's memory filesystem): the size and the time it was written
    stamp = info.get("created") or info.get("LastModified") or info.get("mtime")
    return {"size": int(info.get("size") or 0), "version": f"time:{stamp}"}


def _bare(url):
    """bucket/key: the path fsspec's stores take (the scheme is theirs)."""
    return url.partition("://")[2]
