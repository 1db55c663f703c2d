"""Directories as inputs (CLI.md "Inputs as archived"): the archive files under a folder, oldest first, streamed."""

import os
import re

from gspx_cli.read import dating

# CLI.md: every .json, .ndjson, .json.gz, .ndjson.gz and .gz file (the two .gz forms end in ".gz").
ARCHIVE_SUFFIXES = (".json", ".ndjson", ".gz")
# RudderStack's object-storage date folders: YYYY-MM-DD today, MM-DD-YYYY in older uploads and in
# rudder-proc-err-logs (the table, from rudder-server's uploader).
_ISO_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})\Z")
_US_DAY = re.compile(r"(\d{2})-(\d{2})-(\d{4})\Z")
# The first number in a name, after whatever text leads it: a unix time (<unix>.<source>.<uuid>.json.gz),
# an hour folder, Segment's day in ms, Event Replay's first job id (<first>_<last>_...), gw_jobs_<ds>.
_NUMBER = re.compile(r"(\D*)(\d+)")


def order_key(name):
    """The sort key of a folder entry among its siblings, so that archives are read oldest first."""
    # A date folder by its date (both layouts on one scale), a name with a number by the text before
    # it and then the number (so 9 comes before 10), else by the name. Both date patterns match 10
    # characters exactly: other names (most, in a folder of 1,000 files) skip their regex.
    if len(name) == 10:
        day = _ISO_DAY.match(name)
        if day:
            return "", int(day[1] + day[2] + day[3]), name
        day = _US_DAY.match(name)
        if day:
            return "", int(day[3] + day[1] + day[2]), name
    number = _NUMBER.match(name)
    if number:
        return number[1], int(number[2]), name
    return name, -1, name


def is_archive_name(name):
    """True for a file name gspx reads inside a directory."""
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def iter_tree(root):
    """Yield (path, None) per archive file under root, oldest first, and (path, reason) per unlistable folder."""
    for path, problem, _ in walk(root, listing, os.path.join):
        yield path, problem


def walk(root, listing, join, window=None, passed=None):
    """Yield (path, problem, info) per file under root, oldest first: problem is None, or why a folder
    could not be listed. listing(folder) -> sorted [(order_key, is_dir, info)], raising OSError;
    join(folder, name) -> path, which must equal join(folder, "") + name (os.path.join does, a listed
    name holding no separator): a folder's paths are then one concatenation each. A directory on disk
    and an object-store prefix walk the same way.
    window: a dating.Window; the folders and files it does not need are passed over (a folder is then
    never listed) and counted in passed (ReadStats: pruned_folders, pruned_objects)."""
    # Paths start with root as typed, so FILE:LINE names the file as the user sees it. One folder is
    # listed at a time, when the walk reaches it: the first file comes after one listing per level,
    # never after the whole tree (a bucket may hold millions of objects).
    try:
        top = listing(root)
    except OSError as exc:
        yield root, _reason(exc), None
        return
    prune = window is not None and bool(window)
    # the root as typed is read whatever its date; its date only dates the hour folders in it
    stack = [(root, iter(top), dating.span(_basename(root), True) if prune else None)]
    while stack:
        folder, entries, folder_span = stack[-1]
        prefix = join(folder, "")
        for key, is_dir, info in entries:
            name = key[2]
            entry_span = None
            if prune:
                entry_span = dating.span(name, is_dir, folder_span)
                if not window.needs(entry_span):
                    if passed is not None:
                        if is_dir:
                            passed.pruned_folders += 1
                        else:
                            passed.pruned_objects += 1
                    continue
            path = prefix + name
            if not is_dir:
                yield path, None, info
                continue
            try:
                children = listing(path)
            except OSError as exc:
                yield path, _reason(exc), None
                continue
            stack.append((path, iter(children), entry_span))
            break  # the child folder is read to its end before the next sibling
        else:
            stack.pop()


def listing(folder, outputs=None, settled=None, passed=None):
    """The sub-folders and archive files of one folder as (order_key, is_dir, None), sorted.
    outputs: {real folder path: {file names}} of the run's own outputs, never read as input.
    settled(folder, file names, sub-folder names) -> the names of files an earlier run read whole and
    that have not changed since (a checkpoint's): left out, before any sort key is made for them, and
    counted in passed (ReadStats: settled_files)."""
    # Only names are kept, not os.DirEntry objects: a date folder may hold tens of thousands of files.
    files, folders = [], []
    mine = outputs.get(os.path.realpath(folder), ()) if outputs else ()
    with os.scandir(folder) as it:
        for entry in it:
            name = entry.name
            if name in mine:
                continue  # --failed-output inside the tree: what this run writes is not read back
            try:
                # An archive's name first: most entries are files, told by one call (d_type, no stat).
                # A symlinked folder is not followed (a link to an ancestor would loop for ever).
                if ((name.endswith(ARCHIVE_SUFFIXES) or name.lower().endswith(ARCHIVE_SUFFIXES))
                        and entry.is_file()):
                    files.append(name)
                elif entry.is_dir(follow_symlinks=False):
                    folders.append(name)
            except OSError:
                continue  # it vanished while being listed: nothing to read there
    if settled is not None and files:
        done = settled(folder, files, folders)
        if done:
            files = [name for name in files if name not in done]
            if passed is not None:
                passed.settled_files += len(done)
    entries = [(order_key(name), False, None) for name in files]
    entries += [(order_key(name), True, None) for name in folders]
    entries.sort()
    return entries


def output_names(paths):
    """{real folder path: {file names}} of the given output paths (None ones left out), for listing()."""
    found = {}
    for path in paths:
        if path and path != "-":
            found.setdefault(os.path.realpath(os.path.dirname(os.path.abspath(path))), set()).add(
                os.path.basename(path))
    return found


def _basename(path):
    """The last name of a folder path or URL, trailing slashes ignored."""
    return path.rstrip("/\\").replace("\\", "/").rpartition("/")[2]


def _reason(exc):
    """A short human reason for an OS error ("Permission denied")."""
    return exc.strerror or str(exc)
