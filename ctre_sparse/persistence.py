"""The ``.npz`` model format: a state dict of arrays and JSON into a file and back.

This module knows the file, not the estimator: :class:`~ctre_sparse.CTREClassifier`
builds its state (``_get_state``) and rebuilds itself from one
(``_set_state``); :func:`write_state` and :func:`read_state` move such a state
to a file and back, atomically and without pickle.

The state is a dict with four entries:

``meta``
    JSON-able dict (the estimator's: package version, ``params``, feature
    count, epoch count, seed, data fingerprint).
``history``
    JSON-able list (one record per epoch).
``arrays``
    ``{name: ndarray}``, each stored as its own member under its name (the
    estimator's: ``classes``, ``validation_indices``, ``feature_names_in``,
    ``input_mean``, ``input_scale``,
    ``layers/<i>/indptr``, ``indices``, ``data``, ``shape``, ``bias``).
``tree``
    A nested state (``Trainer.state_dict()``: model, optimizer momentum,
    topology/growth state, random generator state, epoch counter) of dicts,
    lists, tuples, scalars and arrays.

In the file (one NumPy ``.npz`` archive that ``np.load(path,
allow_pickle=False)`` reads), the members are:

``format``
    0-d string, ``"ctre_sparse.CTREClassifier"``.
``format_version``
    0-d int64, currently ``1``.
``meta_json``, ``history_json``
    0-d strings, the JSON of ``meta`` and ``history``.
the ``arrays``, by name
    Layer ``i``'s weight is ``layers/<i>/...`` in CSR form, shape ``(n_out,
    n_in)`` (output rows, the storage of the kernels; ``coefs_[i]`` is its
    transpose).
``state_json`` and ``state/<n>``
    The ``tree`` as JSON in which every array is replaced by ``{"__array__":
    "<member name>"}``; arrays equal to one of ``arrays`` point at it (stored
    once), the others are ``state/<n>``.

The tree encoding (:func:`encode_state` / :func:`decode_state`) keeps dicts
(string keys as JSON objects, other keys as ``{"__items__": [[k, v], ...]}``),
lists, tuples (``{"__tuple__": [...]}``), None, bools, ints (of any size, as in
a random generator's state), floats (NaN/Inf included) and strings. NumPy
scalars become Python scalars; CuPy arrays are copied to the host.
"""

from __future__ import annotations

import json
import logging
import numbers
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .device import to_host
from .validation import check_allocation

logger = logging.getLogger(__name__)

__all__ = ["FORMAT", "FORMAT_VERSION", "STATE_KEYS", "encode_state", "decode_state",
           "atomic_savez", "json_member", "state_to_members", "write_state", "read_state",
           "MAX_JSON_BYTES"]

FORMAT = "ctre_sparse.CTREClassifier"
FORMAT_VERSION = 1
_ZIP_MAGIC = b"PK\x03\x04"   # an .npz is a zip archive
#: The entries of a state dict.
STATE_KEYS = ("meta", "history", "arrays", "tree")
#: Members that are not among the state's ``arrays``.
_FRAME_MEMBERS = ("format", "format_version", "meta_json", "history_json", "state_json")
_TREE_PREFIX = "state/"


class _Encoder:
    """Walks a state tree, moving arrays to a flat member dict."""

    def __init__(self, prefix, arrays, known=None):
        self.prefix = prefix
        self.arrays = arrays
        self.known = list(known or [])      # (name, array) pairs that may be reused
        self.count = 0

    def _store(self, arr):
        arr = np.ascontiguousarray(to_host(arr))
        if arr.dtype.hasobject:
            raise ValueError(f"cannot save an object array (dtype {arr.dtype}) without pickle")
        for name, other in self.known:
            if other is arr or (other.shape == arr.shape and other.dtype == arr.dtype
                                and np.array_equal(other, arr)):
                return {"__array__": name}
        name = f"{self.prefix}{self.count}"
        self.count += 1
        self.arrays[name] = arr
        self.known.append((name, arr))
        return {"__array__": name}

    def encode(self, obj):
        if obj is None or isinstance(obj, (bool, str)):
            return obj
        if isinstance(obj, np.ndarray) or type(obj).__module__.startswith("cupy"):
            return self._store(obj)
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, numbers.Integral):
            return int(obj)
        if isinstance(obj, numbers.Real):
            return float(obj)
        if isinstance(obj, dict):
            if all(isinstance(k, str) and not k.startswith("__") for k in obj):
                return {k: self.encode(v) for k, v in obj.items()}
            return {"__items__": [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if isinstance(obj, tuple):
            return {"__tuple__": [self.encode(v) for v in obj]}
        if isinstance(obj, list):
            return [self.encode(v) for v in obj]
        raise ValueError(f"cannot save a {type(obj).__name__} in the training state "
                         f"(expected arrays, numbers, strings, lists, tuples or dicts)")


def encode_state(tree, arrays, *, prefix="state/", known=None):
    """Encode a nested state into a JSON string, adding its arrays to ``arrays``.

    Parameters
    ----------
    tree : dict, list or scalar
        The state (e.g. ``Trainer.state_dict()``).
    arrays : dict
        Member name -> ndarray; the state's arrays are added to it.
    prefix : str, default "state/"
        Member name prefix of the added arrays.
    known : list of (name, ndarray), optional
        Arrays already in ``arrays`` that an equal state array may point at.

    Returns
    -------
    str
        The JSON tree.

    Examples
    --------
    >>> arrays = {}
    >>> text = encode_state({"w": np.arange(3), "step": (1, None)}, arrays)
    >>> sorted(arrays), decode_state(text, arrays)["step"]
    (['state/0'], (1, None))
    """
    return json.dumps(_Encoder(prefix, arrays, known).encode(tree))


def _decode(obj, arrays):
    if isinstance(obj, list):
        return [_decode(v, arrays) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__array__" in obj:
        return arrays[obj["__array__"]]
    if "__tuple__" in obj:
        return tuple(_decode(v, arrays) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {_hashable(_decode(k, arrays)): _decode(v, arrays) for k, v in obj["__items__"]}
    return {k: _decode(v, arrays) for k, v in obj.items()}


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


def decode_state(text, arrays):
    """Inverse of :func:`encode_state`: rebuild the tree from its JSON ``text`` and ``arrays``.

    Parameters
    ----------
    text : str
    arrays : dict of str to ndarray
        The members the tree's ``{"__array__": name}`` entries point at.
    """
    return _decode(json.loads(text), arrays)


def json_member(obj):
    """A 0-d unicode array holding ``json.dumps(obj)`` (loads without pickle)."""
    return np.array(json.dumps(obj))


def atomic_savez(path, arrays, *, compress=False):
    """Write ``arrays`` to ``path`` (.npz) atomically: temp file + ``os.replace``.

    A reader never sees a half-written file, and an interrupted write leaves
    the previous file in place.

    Parameters
    ----------
    path : str or Path
        Target file; ``.npz`` is not appended.
    arrays : dict of str -> ndarray
    compress : bool, default False

    Returns
    -------
    Path
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_orphaned_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp",
                               dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            (np.savez_compressed if compress else np.savez)(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())      # mkstemp creates 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    logger.debug("wrote %s (%d members)", path, len(arrays))
    return path


def _remove_orphaned_temps(path):
    """Delete the temp files of saves to ``path`` whose writing process is gone.

    A process killed while saving (``kill -9``, power loss) leaves its
    ``.<name>.<pid>.<random>.tmp`` behind; the next save to the same path
    removes it. Temp files of live processes (a concurrent save) are kept.
    """
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        parts = tmp.name[len(path.name) + 2:].split(".")
        if not parts[0].isdigit() or _process_alive(int(parts[0])):
            continue
        try:
            tmp.unlink()
            logger.info("removed %s, left by an interrupted save", tmp)
        except OSError:
            pass      # another process removed it first, or no permission: not ours to force


def _process_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # exists, owned by another user
        return True
    return True


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: Largest JSON member read (bytes as stored: 4 per character).
MAX_JSON_BYTES = 256 << 20
#: Largest npy header parsed (numpy's own default).
_MAX_HEADER = 10000


class _Archive:
    """An open ``.npz`` read member by member, each header checked before its data is read.

    Nothing is read that the caller does not ask for, object arrays are
    refused (no pickle), and the bytes a member declares are counted against
    the machine's memory before it is allocated: a hostile file cannot make
    the reader allocate more than the members asked for declare.
    """

    def __init__(self, path, zf):
        self.path = path
        self.zf = zf
        self.names = {n[:-4] for n in zf.namelist() if n.endswith(".npy")}
        self.total = 0

    def header(self, name):
        """``(shape, dtype)`` of member ``name`` from its npy header."""
        with self.zf.open(name + ".npy") as fp:
            version = np.lib.format.read_magic(fp)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(
                    fp, max_header_size=_MAX_HEADER)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(
                    fp, max_header_size=_MAX_HEADER)
            else:
                raise ValueError(f"member {name!r} has npy format version {version}")
        return shape, dtype

    def read(self, name, max_bytes=None):
        """Member ``name`` as an array, after its header passed the checks."""
        if name not in self.names:
            raise ValueError(f"member {name!r} is missing")
        shape, dtype = self.header(name)
        if dtype.hasobject:
            raise ValueError(f"member {name!r} holds pickled (object) data, which a model file "
                             "never does")
        nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        if max_bytes is not None and nbytes > max_bytes:
            raise ValueError(f"member {name!r} declares {nbytes} bytes, more than the "
                             f"{max_bytes} such a member may hold")
        self.total += nbytes
        check_allocation(self.total, f"reading {name!r} (and the members before it)")
        with self.zf.open(name + ".npy") as fp:
            return np.lib.format.read_array(fp, allow_pickle=False,
                                            max_header_size=_MAX_HEADER)

    def text(self, name):
        """A 0-d string member (the JSON members, the format tag)."""
        arr = self.read(name, MAX_JSON_BYTES)
        if arr.shape != () or arr.dtype.kind != "U":
            raise ValueError(f"member {name!r} must be a 0-d string, got {arr.dtype} with "
                             f"shape {arr.shape}")
        return str(arr[()])

    def check_format(self):
        """Raise ValueError unless the format tag and version are this package's."""
        tag = self.text("format") if "format" in self.names else ""
        if tag != FORMAT:
            raise ValueError(f"not a ctre_sparse model file (format tag {tag!r}, expected "
                             f"{FORMAT!r})")
        version = self.read("format_version", 64)
        if version.shape != () or version.dtype.kind not in "iu":
            raise ValueError("format_version must be a 0-d integer")
        if int(version) > FORMAT_VERSION:
            raise ValueError(f"format version {int(version)} is newer than this ctre_sparse "
                             f"reads ({FORMAT_VERSION}); upgrade ctre_sparse")


def _open_archive(path):
    """``zipfile.ZipFile`` of ``path``, after the checks that need no parsing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (expected a model saved by "
                                f"CTREClassifier.save)")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a model file (.npz)")
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head != _ZIP_MAGIC:   # np.load would try other formats (pickle included) on anything else
        raise ValueError(f"{path}: not a valid ctre_sparse model file (not an .npz archive: "
                         f"{'it is empty' if not head else f'it starts with {head!r}'})")
    return zipfile.ZipFile(path)


def _array_refs(tree):
    """Every member name a decoded-JSON state tree points at (``{"__array__": name}``)."""
    found, stack = set(), [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("__array__"), str):
                found.add(node["__array__"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _why_unreadable(exc):
    """A user-facing reason for an archive that np.load could not read."""
    text = str(exc)
    if "allow_pickle" in text or "pickled" in text:
        return "it holds pickled (object) data, which a model file never does"
    if isinstance(exc, (zipfile.BadZipFile, EOFError)) or "zip" in text.lower():
        return f"not a complete .npz archive: truncated or corrupt ({text or type(exc).__name__})"
    return text or type(exc).__name__


# ------------------------------------------------------------ state <-> file
def state_to_members(state):
    """The archive members of a state dict (see the module notes); pure, no file.

    Raises
    ------
    ValueError
        If ``state`` lacks an entry, an array name collides with the
        format's own members, or the tree holds something JSON cannot carry.
    """
    missing = [k for k in STATE_KEYS if k not in state]
    if missing:
        raise ValueError(f"a state needs the entries {STATE_KEYS}, missing {missing}")
    members = {"format": np.array(FORMAT), "format_version": np.array(FORMAT_VERSION, np.int64),
               "meta_json": json_member(state["meta"]),
               "history_json": json_member(state["history"])}
    known = []
    for name, arr in state["arrays"].items():
        if name in _FRAME_MEMBERS or name.startswith(_TREE_PREFIX):
            raise ValueError(f"array name {name!r} is reserved by the file format")
        members[name] = np.ascontiguousarray(to_host(arr))
        known.append((name, members[name]))
    members["state_json"] = np.array(encode_state(state["tree"], members, prefix=_TREE_PREFIX,
                                                  known=known))
    return members


def write_state(path, state):
    """Write a state dict to ``path`` (.npz), atomically (:func:`atomic_savez`).

    Parameters
    ----------
    path : str or Path
    state : dict
        ``{"meta", "history", "arrays", "tree"}`` (see the module notes).

    Returns
    -------
    Path
    """
    return atomic_savez(path, state_to_members(state))


def read_state(path, *, select=None):
    """Read a state dict from a file written by :func:`write_state`.

    The file is untrusted input: only the members asked for are read (the
    frame, the arrays ``select`` names, the arrays the tree points at), each
    npy header is checked before its data is read (no object arrays, the
    declared bytes counted against the machine's memory), and anything
    malformed is a :class:`ValueError` naming the file.

    Parameters
    ----------
    path : str or Path
    select : callable, optional
        ``select(meta) -> iterable of str``: the names of the state's
        ``arrays`` to read, given the metadata; names absent from the file
        are left out (the caller decides what is required). Default: every
        member that is not part of the frame or the tree.

    Returns
    -------
    dict
        ``{"meta", "history", "arrays", "tree"}``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not a valid model file of a version this package reads.
    """
    try:
        with _open_archive(path) as zf:
            return _read_state(_Archive(path, zf), select)
    except (ValueError, OSError, EOFError, KeyError, TypeError, zipfile.BadZipFile,
            json.JSONDecodeError) as exc:
        if isinstance(exc, FileNotFoundError) or str(exc).startswith(f"{path}:"):
            raise
        raise ValueError(f"{path}: not a valid ctre_sparse model file ({_why_unreadable(exc)})"
                         ) from None


def _read_state(archive, select):
    archive.check_format()
    meta = json.loads(archive.text("meta_json"))
    history = json.loads(archive.text("history_json"))
    tree_text = archive.text("state_json")
    if not isinstance(meta, dict) or not isinstance(history, list):
        raise ValueError("meta_json must hold an object and history_json a list")
    if select is None:
        wanted = [n for n in archive.names
                  if n not in _FRAME_MEMBERS and not n.startswith(_TREE_PREFIX)]
    else:
        wanted = [n for n in select(meta) if n in archive.names]
    arrays = {name: archive.read(name) for name in wanted}
    members = dict(arrays)
    for name in sorted(_array_refs(json.loads(tree_text)) - set(members)):
        if not name.startswith(_TREE_PREFIX):
            raise ValueError(f"the state points at member {name!r}, which it may not")
        members[name] = archive.read(name)
    return {"meta": meta, "history": history, "arrays": arrays,
            "tree": decode_state(tree_text, members)}
