"""An input's name as text: the checkpoint key of an input, and a file name that is not UTF-8 written so
that SQLite and UTF-8 output can hold it and it turns back into the very name."""

import os
import re

from gspx_cli.read import remote


def source_key(path):
    """The checkpoint key of an input: its absolute path, its URL, or "-" for standard input."""
    if path == "-" or remote.is_url(path):
        return path
    return text_of_name(os.path.abspath(path))


def text_of_name(name):
    """A file name as text SQLite and UTF-8 output can hold: a name that is not UTF-8 (an old archive's
    Latin-1 name) reaches Python with each bad byte as a lone surrogate, written here as its JSON escape
    (\\udcff), which json.loads() and os.fsencode() turn back into the very bytes.

    Part by part (between separators, so a folder's text and its file's make the path's), and one-to-one:
    a part escaped has its backslashes doubled, as JSON's are, and so has a UTF-8 part that holds such an
    escape as it is (a file named "caf\\udce9" beside a Latin-1 "café" is another input, another key)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        if "\\" not in name or not _LIKE_ESCAPE.search(name):
            return name
    return os.sep.join(map(_text_of_part, name.split(os.sep)))


_LIKE_ESCAPE = re.compile(r"\\udc[89a-f][0-9a-f]")  # the escape of a byte that is not UTF-8 (U+DC80..U+DCFF)


def _text_of_part(part):
    try:
        part.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        if "\\" not in part or not _LIKE_ESCAPE.search(part):
            return part
    return part.replace("\\", "\\\\").encode("utf-8", "backslashreplace").decode("utf-8")
