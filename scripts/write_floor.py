#!/usr/bin/env python3
"""The least time writing a run folder can take on this machine: no computing, only the files.

    python3 scripts/write_floor.py RUN_FOLDER [ROUNDS [SCRATCH]]

Reads every file of RUN_FOLDER (an `as_of=…` folder a night wrote) into memory, then, ROUNDS
times (default 3), writes them all again into a new folder the way a night does: one
create, write and close per file, then one syncfs(2) so that the bytes are on disk before a
rename could publish them (`io::sync_tree`). Prints the files, the bytes and, per round, the
seconds to create and write and the seconds to sync. Nothing a night computes is in these
seconds, so no night that writes the same folder can be faster than their sum: `scripts/bench.sh`
sets it beside issue 13's target for the incremental night.

The copies go into SCRATCH (a folder on the same file system, made if missing) and are left
there for the caller to delete; without it they go beside RUN_FOLDER and are deleted after the
last round. On ext4, creating files right after deleting thousands is many times slower
(BENCHMARKS.md, session 76): a round after a deletion measures the deletion, not the writing,
and a night right after this script's deletion would too. `scripts/bench.sh` passes a
folder it deletes at its exit. Standard library only.
"""

import ctypes
import os
import shutil
import sys
import time


def syncfs(path):
    """syncfs(2) of the file system holding `path` (os.sync() where libc lacks it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if not hasattr(libc, "syncfs"):
            os.sync()
        elif libc.syncfs(fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
    finally:
        os.close(fd)


def read_tree(root):
    """(relative folders, [(relative path, bytes)]) of every regular file under `root`, sorted."""
    folders, files = [], []
    for here, dirs, names in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(here, root)
        if rel != ".":
            folders.append(rel)
        for name in sorted(names):
            path = os.path.join(here, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, "rb") as f:
                    files.append((os.path.normpath(os.path.join(rel, name)), f.read()))
    return folders, files


def write_tree(dest, folders, files):
    """Writes the files into the new folder `dest`; returns (create and write s, sync s)."""
    t0 = time.perf_counter()
    os.mkdir(dest)
    for rel in folders:
        os.mkdir(os.path.join(dest, rel))
    for rel, data in files:
        fd = os.open(os.path.join(dest, rel), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    t1 = time.perf_counter()
    syncfs(dest)
    return t1 - t0, time.perf_counter() - t1


def main(argv):
    if len(argv) not in (2, 3, 4) or not os.path.isdir(argv[1]):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 64
    src = os.path.abspath(argv[1])
    rounds = int(argv[2]) if len(argv) >= 3 else 3
    folders, files = read_tree(src)
    size = sum(len(d) for _, d in files)
    keep = len(argv) == 4
    parent = os.path.abspath(argv[3]) if keep else os.path.dirname(src)
    os.makedirs(parent, exist_ok=True)
    copies = []
    try:
        results = []
        for k in range(rounds):
            dest = os.path.join(parent, ".write-floor-%d-%d" % (os.getpid(), k))
            copies.append(dest)
            # Whatever an earlier round left in the page cache is flushed first.
            syncfs(parent)
            results.append(write_tree(dest, folders, files))
    finally:
        for dest in copies if not keep else []:
            shutil.rmtree(dest, ignore_errors=True)
    best = min(results, key=lambda r: r[0] + r[1])
    print("files=%d bytes=%d" % (len(files), size))
    for k, (w, s) in enumerate(results):
        print("round %d: create and write %.3f s, sync %.3f s, total %.3f s" % (k + 1, w, s, w + s))
    print("floor %.3f s" % (best[0] + best[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
