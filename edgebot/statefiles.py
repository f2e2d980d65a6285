"""Private state files: directories 0700, files 0600, atomic replacement (queue, site profile, keys, summaries).

Everything the agent keeps about the network it watches (the MQTT queue holds incidents with
host addresses; the site profile holds what is normal here) must not be readable by other local
users. The rules, for every state file of edgebot:

- :func:`private_dir` creates a missing directory (and missing parents) with mode 0700; an
  existing directory that edgebot owns (``tighten=True``, e.g. the default state directory, which
  systemd's ``StateDirectory=`` creates 0755) is narrowed to 0700; a directory the user chose is
  left alone, with a warning when other users can enter it.
- :func:`open_private` opens (creating if needed) a file with mode 0600, and narrows an existing
  file of ours that is more open; :func:`prepare_private_file` does only the create/narrow part,
  for files another library opens (SQLite then creates its ``-wal`` and ``-shm`` files with the
  database file's mode).
- :func:`writable_file_problem` says, before a run, why a file could not be opened for writing
  at start-up (``--check-config``, ``--summary-json``).
- :func:`atomic_write` writes a whole file through a temporary sibling, ``fsync`` and
  ``os.replace``: a reader sees the old content or the new one, never half of it, even after a
  crash or power cut. :func:`atomic_write_private` also makes the directory private.
- :func:`staged_dir` (with :func:`publish_dir`) does the same for a whole directory (a run dir, a
  bundle): it is filled under a temporary sibling and renamed into place only when complete.

Failures raise ``OSError`` (callers turn them into their own one-line error).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

log = logging.getLogger(__name__)

__all__ = ["DIR_MODE", "FILE_MODE", "private_dir", "prepare_private_file", "open_private", "atomic_write",
           "atomic_write_private", "is_private", "writable_file_problem", "publish_dir", "staged_dir"]

DIR_MODE = 0o700
FILE_MODE = 0o600
_warned: set[str] = set()


def is_private(path: str | os.PathLike[str]) -> bool:
    """True if neither group nor others have any permission on ``path``."""
    return stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0


def private_dir(path: str | os.PathLike[str], *, tighten: bool = False) -> Path:
    """Make sure ``path`` is a directory; create it (and missing parents) with mode 0700.

    Parameters
    ----------
    path
        The directory.
    tighten
        The directory belongs to edgebot (its state directory): narrow an existing one to 0700
        if it is ours and more open. Without it, an existing directory is never changed (it may
        be the user's working directory); a warning says once when other users can enter it.

    Returns
    -------
    Path
    """
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass
        os.chmod(directory, DIR_MODE)  # mkdir's mode is reduced by the umask, never widened: set it exactly
    if not path.is_dir():
        raise NotADirectoryError(20, "not a directory", str(path))
    if path not in missing:
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            if tighten and _owned(path):
                os.chmod(path, DIR_MODE)
                log.info("narrowed the permissions of %s from %o to 700", path, mode)
            elif mode & 0o005 and str(path) not in _warned:
                _warned.add(str(path))
                log.warning("%s can be entered by other users (mode %o); its state files are 0600, "
                            "but prefer a private directory (chmod 700)", path, mode)
    return path


def _owned(path: Path) -> bool:
    return not hasattr(os, "geteuid") or os.stat(path).st_uid == os.geteuid()


def prepare_private_file(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` empty with mode 0600 if missing; narrow it to 0600 if it exists and is ours.

    Refuses (``IsADirectoryError`` / ``OSError``) anything that is not a regular file.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
    except FileExistsError:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(21, "is a directory", str(path)) from None
        if not stat.S_ISREG(st.st_mode):
            raise OSError(22, "not a regular file", str(path)) from None
        if stat.S_IMODE(st.st_mode) & 0o077 and _owned(path):
            os.chmod(path, FILE_MODE)
    else:
        os.close(fd)
        os.chmod(path, FILE_MODE)
    return path


def open_private(path: str | os.PathLike[str], mode: str = "ab", **kwargs: Any) -> IO[Any]:
    """``open(path, mode)`` after :func:`prepare_private_file` (only for write or append modes)."""
    if not any(c in mode for c in "wa+"):
        raise ValueError(f"open_private is for writing; got mode {mode!r}")
    prepare_private_file(path)
    return open(path, mode, **kwargs)  # noqa: SIM115 - the caller owns the handle


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int = FILE_MODE, fsync: bool = True) -> Path:
    """Replace ``path`` with ``data`` atomically (temporary sibling, fsync, ``os.replace``).

    Parameters
    ----------
    path
        The file; its directory must exist.
    data
        The whole new content.
    mode
        Permissions of the new file, set exactly (default 0600).
    fsync
        Also ``fsync`` the file and its directory (survives a power cut).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if fsync:
        try:
            dir_fd = os.open(path.parent, os.O_RDONLY)
        except OSError:
            return path
        try:
            os.fsync(dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)
    return path


def atomic_write_private(path: str | os.PathLike[str], data: bytes, *, tighten_dir: bool = False) -> Path:
    """:func:`atomic_write` with mode 0600 into a :func:`private_dir` (created 0700 if missing)."""
    path = Path(path)
    private_dir(path.parent, tighten=tighten_dir)
    return atomic_write(path, data, mode=FILE_MODE)


def writable_file_problem(path: Path, *, sqlite: bool = False, create_dirs: bool = True,
                          devices_ok: bool = False) -> str | None:
    """Why ``path`` could not be opened for writing as a regular file at start-up, or None.

    Parameters
    ----------
    path
        The file.
    sqlite
        An existing non-empty file must be an SQLite database.
    create_dirs
        Missing directories would be created (the nearest existing one must be writable).
    devices_ok
        Accept a character device such as ``/dev/null`` or ``/dev/stdout`` (JSON lines).
    """
    try:
        if path.exists() or path.is_symlink():
            st = path.stat()
            if stat.S_ISDIR(st.st_mode):
                return f"{path} is a directory; give a file path"
            if not stat.S_ISREG(st.st_mode) and not (devices_ok and stat.S_ISCHR(st.st_mode)):
                return f"{path} is not a regular file (a device or a pipe); give a file path"
            if not os.access(path, os.W_OK):
                return f"{path} is not writable by this user"
            if sqlite and st.st_size:
                with open(path, "rb") as fh:
                    if fh.read(16) != b"SQLite format 3\x00":
                        return f"{path} exists and is not an SQLite queue file; remove it or choose another path"
            return None
        parent = path.parent
        if not create_dirs:
            if not parent.is_dir():
                return f"no such directory: {parent}"
        else:
            while not parent.exists() and parent.parent != parent:
                parent = parent.parent
            if not parent.is_dir():
                return f"{parent} is not a directory, so {path} cannot be created"
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"cannot create {path}: {parent} is not writable by this user"
    except (OSError, ValueError) as exc:  # ValueError: an embedded NUL byte
        return f"cannot use {path!s:.200}: {getattr(exc, 'strerror', None) or exc}"
    return None


def publish_dir(tmp: Path, out: Path) -> None:
    """Move the complete directory ``tmp`` to ``out``, replacing a previous one there.

    The previous directory is renamed aside first and removed last, so ``out`` is at every moment
    either the old complete directory or the new one (never a mix).
    """
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def staged_dir(out: str | os.PathLike[str]) -> Iterator[Path]:
    """A fresh temporary sibling of ``out`` to fill; published to ``out`` when the block ends.

    When the block raises (or is interrupted), the temporary directory is removed and ``out`` is
    left as it was.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        publish_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
