"""Chunked event I/O: NanoAOD ROOT and parquet files read by column and chunk; outputs written atomically.

Tasks read several row-aligned sources at once (e.g. the NanoAOD file plus the calibrated columns); the
later source's columns override the earlier ones. Only the columns a task declares in ``uses`` are read,
and memory stays bounded by the chunk size, not the file size.
"""

from __future__ import annotations

import bisect
import contextlib
import difflib
import errno
import json
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import Any, Protocol

import awkward as ak
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from cf.columnar_util import Route, filter_routes, set_ak_column, strip_unused_options
from cf.util import UserError

__all__ = [
    "EventSource",
    "InputFileError",
    "MemorySource",
    "MissingColumnError",
    "OutputFileError",
    "ParquetSource",
    "ParquetWriter",
    "RootSource",
    "TASK_PROCESSES_ENV",
    "atomic_path",
    "dump_json",
    "iter_event_chunks",
    "load_json",
    "merged_chunk",
    "open_source",
    "task_processes",
    "writes_in_background",
]

DEFAULT_CHUNK_SIZE = 50_000


class InputFileError(OSError):
    """An input file that is missing, corrupt or unreadable (the message names it)."""


class OutputFileError(OSError):
    """An output that cannot be stored: no space left, a quota or file size limit, a read-only or forbidden place."""


#: The errors that mean an output cannot be stored where it should go, not a bug of the code writing it.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM})


def storage_errno(error: BaseException) -> int | None:
    """The errno of an OSError that means the output cannot be stored (:data:`STORAGE_ERRNOS`), else None.

    pyarrow's errors carry the errno only in their text (``[errno 28] ...``), so the text is read too.
    """
    if not isinstance(error, OSError):
        return None
    code = error.errno
    if code is None:
        match = re.search(r"\[errno (\d+)\]", str(error), flags=re.IGNORECASE)
        code = int(match.group(1)) if match else None
    return code if code in STORAGE_ERRNOS else None


def _storage_error(error: OSError, path: str) -> OutputFileError:
    code = storage_errno(error)
    reason = os.strerror(code) if code is not None else str(error)
    return OutputFileError(f"cannot write '{path}': {reason}")


class MissingColumnError(UserError, KeyError):
    """A column that a function declares in ``uses`` is in none of the files read."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class EventSource(Protocol):
    """A file of events that can be read by column and entry range."""

    path: str
    n_events: int

    def routes(self) -> list[Route]: ...

    def read(self, routes: list[Route], start: int, stop: int) -> ak.Array: ...


#: Seconds after which a request to a remote (``root://``) file fails: a server that is down or does not answer
#: fails the task instead of hanging it. The XRootD client checks timeouts every 15 s: with 20 s, a server that is
#: down fails an open or a read after ~30 s (with 30 s, after 30-45 s).
REMOTE_TIMEOUT = 20
#: Characters of an underlying error that an ``InputFileError`` message quotes.
ERROR_DETAIL_LENGTH = 500


class RootSource:
    """The ``Events`` of a NanoAOD file; branches ``Jet_pt`` (with counter ``nJet``) become ``Jet.pt``.

    The events may be a TTree or an RNTuple (detected per file); an RNTuple converted from a NanoAOD TTree gives
    the same routes and arrays as the TTree (see :func:`_rntuple_columns`). ``path`` may be a ``root://`` URL;
    remote requests time out after ``REMOTE_TIMEOUT`` seconds.
    """

    def __init__(self, path: str, tree_name: str = "Events") -> None:
        import uproot

        self.path = path
        # remote files: bounded requests (the XRootD client's default is to wait for ever)
        options = {"timeout": REMOTE_TIMEOUT} if path.startswith(("root://", "roots://")) else {}
        try:
            # no array cache: chunks are read once each, and a cache would only hold up to 100 MB per file
            self._file = uproot.open(path, array_cache=None, **options)
            if tree_name not in self._file:
                raise InputFileError(f"ROOT file '{path}' has no tree '{tree_name}' (keys: {self._file.keys()})")
            self._tree = self._file[tree_name]
        except InputFileError:
            raise
        except Exception as error:
            # e.g. a truncated file whose header is intact: reading the tree's metadata fails
            raise InputFileError(f"cannot open ROOT file '{path}': {_one_line(error)}") from error
        self._rntuple = isinstance(self._tree, uproot.behaviors.RNTuple.RNTuple)
        if not self._rntuple and not isinstance(self._tree, uproot.behaviors.TTree.TTree):
            raise InputFileError(
                f"'{tree_name}' in ROOT file '{path}' is a {type(self._tree).__name__}, not a TTree or RNTuple"
            )
        self.n_events = int(self._tree.num_entries)
        self._branch_of: dict[Route, str] = {}
        nested: dict[Route, str] = {}
        if self._rntuple:
            names, nested = _rntuple_columns(self._tree)
            clusters = self._tree.ntuple.cluster_summaries
            self._cluster_offsets = [int(c.num_first_entry) for c in clusters] + [self.n_events]
        else:
            names = set(self._tree.keys())
        heads = {n.split("_", 1)[0] for n in names if "_" in n}
        for name in names:
            if name.startswith("n") and (name[1:] in heads or name[1:] in names):
                continue  # a collection counter such as nJet, or a per-branch one such as nJet_pt (uproot-written)
            head, sep, tail = name.partition("_")
            route = Route((head, tail)) if sep else Route(name)
            self._branch_of[route] = name
        self._branch_of.update(nested)
        # per branch, the last basket-aligned entry range read (start, stop, array); see _read_branches
        self._window: dict[str, tuple[int, int, ak.Array]] = {}

    def routes(self) -> list[Route]:
        return list(self._branch_of)

    def _basket_range(self, branches: list[str], start: int, stop: int) -> tuple[int, int]:
        """The smallest entry range that starts and ends on basket boundaries of all branches and holds start-stop."""
        low, high = start, stop
        for branch in branches:
            # an RNTuple's fields share the cluster boundaries
            offsets = self._cluster_offsets if self._rntuple else self._tree[branch].entry_offsets
            low = min(low, offsets[max(bisect.bisect_right(offsets, start) - 1, 0)])
            high = max(high, offsets[min(bisect.bisect_left(offsets, stop), len(offsets) - 1)])
        return low, high

    def _read_branches(self, branches: list[str], start: int, stop: int) -> dict[str, ak.Array]:
        """The branches' arrays of entries start-stop.

        A basket is compressed as a whole, so reading a chunk decompresses every basket it touches. Reads are
        widened to basket boundaries and kept until the chunks leave them: a basket larger than the chunk size
        (e.g. a file written in one go, with one basket per branch) is decompressed once, not once per chunk.
        """
        missing = [
            branch
            for branch in branches
            if branch not in self._window or not (self._window[branch][0] <= start and stop <= self._window[branch][1])
        ]
        if missing:
            low, high = self._basket_range(missing, start, stop) if stop > start else (start, stop)
            if self._rntuple:
                arrays = _read_rntuple(self._tree, missing, low, high)
            else:
                arrays = self._tree.arrays(missing, entry_start=low, entry_stop=high, library="ak", how=dict)
            for branch in missing:
                self._window[branch] = (low, high, arrays[branch])
        data = {}
        for branch in branches:
            low, high, array = self._window[branch]
            data[branch] = array if (low, high) == (start, stop) else array[start - low : stop - low]
        return data

    def read(self, routes: list[Route], start: int, stop: int) -> ak.Array:
        branches = [self._branch_of[route] for route in routes]
        try:
            data = self._read_branches(branches, start, stop)
        except Exception as error:
            raise InputFileError(f"cannot read entries {start}-{stop} of '{self.path}': {_one_line(error)}") from error
        grouped: dict[str, dict[str, ak.Array]] = {}
        flat: dict[str, ak.Array] = {}
        for route, branch in zip(routes, branches, strict=True):
            if len(route) == 1:
                flat[route.fields[0]] = data[branch]
            else:
                grouped.setdefault(route.fields[0], {})[route.fields[1]] = data[branch]
        for name, columns in grouped.items():
            flat[name] = _zip_branches(columns)
        return ak.Array(flat) if flat else ak.Array(ak.contents.RecordArray([], [], length=stop - start))


def _zip_branches(columns: dict[str, ak.Array]) -> ak.Array:
    """``ak.zip(columns)`` of one collection's branches, built directly where that gives the same array.

    ``ak.zip`` broadcasts the branches against each other; a NanoAOD collection's branches need none: lists with
    the same offsets (``nJet``) or flat arrays of one length. Anything else goes to ``ak.zip``.
    """
    layouts = [column.layout for column in columns.values()]
    first = layouts[0]
    if all(_is_flat_numbers(layout) and layout.length == first.length for layout in layouts):
        return ak.Array(ak.contents.RecordArray(layouts, list(columns), first.length))
    if isinstance(first, ak.contents.ListOffsetArray) and all(
        isinstance(layout, ak.contents.ListOffsetArray)
        and not layout._parameters
        and _is_flat_numbers(layout.content)
        and np.array_equal(layout.offsets.data, first.offsets.data)
        for layout in layouts
    ):
        # as broadcasting does: offsets from zero (those of a chunk inside a basket do not start there)
        start, stop = int(first.offsets[0]), int(first.offsets[-1])
        offsets = first.offsets if start == 0 else ak.index.Index64(first.offsets.data - start)
        contents = [layout.content[start:stop] for layout in layouts]
        records = ak.contents.RecordArray(contents, list(columns), stop - start)
        return ak.Array(ak.contents.ListOffsetArray(offsets, records))
    return ak.zip(columns)


def _is_flat_numbers(layout: ak.contents.Content) -> bool:
    return isinstance(layout, ak.contents.NumpyArray) and layout.data.ndim == 1


def _one_line(error: BaseException) -> str:
    """An error's message on one line of at most ``ERROR_DETAIL_LENGTH`` characters (uproot's span many lines)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= ERROR_DETAIL_LENGTH else text[: ERROR_DETAIL_LENGTH - 3] + "..."


def _rntuple_columns(rntuple: Any) -> tuple[set[str], dict[Route, str]]:
    """The columns of an RNTuple: flat field names (named like TTree branches) and nested routes.

    An RNTuple converted from a NanoAOD TTree (ROOT's RNTupleImporter, e.g. coffea's ``nano_dy_rntuple.root``)
    stores each collection as an anonymous record collection ``_collectionN`` (subfields ``Jet_pt``, ...) and
    exposes the TTree's names as projected fields: ``Jet_pt`` (``RVec<float>``), ``nJet`` (a cardinality),
    flat fields such as ``run`` as they are. The storage fields that projections point into are left out, so the
    names are the TTree's branch names. A record field without projections (``Jet`` with subfields ``pt``, as
    uproot writes an ``ak.zip`` collection) gives the routes ``Jet.pt``, read as the field path ``Jet.pt``.

    Returns:
        The flat field names and, per nested route, its field path.
    """
    ntuple = rntuple.ntuple
    _index_rntuple_fields(ntuple)
    records = ntuple.field_records

    def top_level(field_id: int) -> int:
        while records[field_id].parent_field_id != field_id:
            field_id = records[field_id].parent_field_id
        return field_id

    storage = {records[top_level(r.source_field_id)].field_name for r in records if r.source_field_id is not None}
    names: set[str] = set()
    nested: dict[Route, str] = {}
    for field in rntuple.fields:
        if field.name in storage:
            continue
        if field.fields:
            for subfield in field.fields:
                nested[Route((field.name, subfield.name))] = f"{field.name}.{subfield.name}"
        else:
            names.add(field.name)
    return names, nested


def _index_rntuple_fields(ntuple: Any) -> None:
    """Fill uproot's per-field lists of subfields in one pass over the field records.

    uproot (5.7) finds each field's subfields by scanning all field records, on first use of each field: for
    NanoAOD's ~2000 fields that is ~2 s per opened file. This computes the same lists in linear time (an anonymous
    subfield, such as the ``_0`` item of a collection, is replaced by its own subfields, as uproot does). It relies
    on uproot's private ``_fields`` attributes; if they are not as expected, uproot computes the lists itself.
    """
    try:
        records = ntuple.field_records
        fields = ntuple.all_fields
        if ntuple._fields is not None or any(field._fields is not None for field in fields):
            return
        children: list[list[int]] = [[] for _ in records]
        top: list[int] = []
        for field_id, record in enumerate(records):
            (top if record.parent_field_id == field_id else children[record.parent_field_id]).append(field_id)
        subfields: dict[int, list[Any]] = {}

        def subfields_of(field_id: int) -> list[Any]:
            if field_id not in subfields:
                found: list[Any] = []
                for child in children[field_id]:
                    if fields[child].is_anonymous:
                        found.extend(subfields_of(child))
                    else:
                        found.append(fields[child])
                subfields[field_id] = found
            return subfields[field_id]

        for field_id, field in enumerate(fields):
            field._fields = subfields_of(field_id)
        ntuple._fields = [fields[field_id] for field_id in top]
    except (AttributeError, IndexError, TypeError, RecursionError):
        return


def _read_rntuple(rntuple: Any, columns: list[str], start: int, stop: int) -> dict[str, ak.Array]:
    """The arrays of RNTuple columns (flat names or field paths ``Jet.pt``) for entries start-stop."""
    arrays = rntuple.arrays(columns, entry_start=start, entry_stop=stop, library="ak", how=dict)
    data = {}
    for column in columns:
        head, sep, tail = column.partition(".")
        data[column] = arrays[head][tail] if sep else arrays[column]
    return data


class ParquetSource:
    """A parquet file written by a task; entry ranges are read through the row groups that hold them."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self._file = pq.ParquetFile(path)
            self._meta = self._file.metadata
            form = ak.metadata_from_parquet(path)["form"]
        except Exception as error:
            raise InputFileError(f"cannot open parquet file '{path}': {error}") from error
        self.n_events = int(self._meta.num_rows)
        self._routes = [Route(column) for column in form.columns()]
        sizes = [self._meta.row_group(i).num_rows for i in range(self._meta.num_row_groups)]
        self._group_starts = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
        self._leaves = _parquet_leaves(self._file)
        self._leaf_order = {column: index for index, column in enumerate(self._leaves or ())}

    def routes(self) -> list[Route]:
        return list(self._routes)

    def read(self, routes: list[Route], start: int, stop: int) -> ak.Array:
        starts = self._group_starts
        groups = [i for i in range(len(starts) - 1) if starts[i] < stop and starts[i + 1] > start]
        if not groups and stop == start and len(starts) > 1:
            # an empty range (e.g. a file without events) still gets the typed columns, from the first row group
            groups = [0]
        if not routes or not groups:
            return ak.Array(ak.contents.RecordArray([], [], length=stop - start))
        columns = [route.column for route in routes]
        if self._leaves is not None and all(column in self._leaves for column in columns):
            # the row groups straight from the open file: ak.from_parquet would reopen the file and parse its
            # metadata for every chunk; columns in file order, as ak.from_parquet returns them; no decoding
            # threads, which cost more CPU time and memory than they save on chunks of this size
            paths = [self._leaves[column] for column in sorted(set(columns), key=self._leaf_order.__getitem__)]
            array = ak.from_arrow(self._file.read_row_groups(groups, columns=paths, use_threads=False))
        else:
            array = ak.from_parquet(self.path, columns=columns, row_groups=groups)
        offset = starts[groups[0]]
        return strip_unused_options(array[start - offset : stop - offset])


def _parquet_leaves(file: pq.ParquetFile) -> dict[str, str] | None:
    """Per leaf column (``Jet.pt``), its parquet column path (``Jet.list.element.pt``), in file order.

    None if the arrow schema does not explain the file's columns (then reads go through ``ak.from_parquet``).
    """
    leaves: dict[str, str] = {}

    def walk(type_: pa.DataType, route: list[str], path: list[str]) -> None:
        if pa.types.is_struct(type_):
            for index in range(type_.num_fields):
                field = type_.field(index)
                walk(field.type, [*route, field.name], [*path, field.name])
        elif pa.types.is_list(type_) or pa.types.is_large_list(type_):
            walk(type_.value_type, route, [*path, "list", type_.value_field.name])
        else:
            leaves[".".join(route)] = ".".join(path)

    for field in file.schema_arrow:
        walk(field.type, [field.name], [field.name])
    metadata = file.metadata
    if list(leaves.values()) != [metadata.schema.column(i).path for i in range(metadata.num_columns)]:
        return None
    return leaves


def open_source(path: str) -> EventSource:
    """Open a ROOT (``.root``, also ``root://`` URLs) or parquet file as an event source."""
    if path.endswith(".parquet"):
        return ParquetSource(path)
    return RootSource(path)


#: At most this many existing columns are named as close matches of a missing one.
N_CLOSE_MATCHES = 10


def close_columns(column: str, available: Iterable[str], n: int = N_CLOSE_MATCHES) -> list[str]:
    """The existing columns most similar to ``column`` (at most ``n``, best first), e.g. other IDs of the object.

    Columns of the same collection are preferred: ``Electron.mvaFall17V2Iso_WP90`` is matched against the
    ``Electron.*`` columns first, so that the suggestions are the collection's IDs, not similar names elsewhere.
    """
    available = sorted(set(available))
    head = column.split(".", 1)[0] + "."
    same_collection = [name for name in available if name.startswith(head)]
    matches = difflib.get_close_matches(column, same_collection, n=n, cutoff=0.5) if "." in column else []
    for match in difflib.get_close_matches(column, available, n=n, cutoff=0.5):
        if len(matches) >= n:
            break
        if match not in matches:
            matches.append(match)
    return matches


def missing_column_message(column: str, origin: str | None, sources: list[EventSource]) -> str:
    """One line: the missing column, where it is declared, the files read and the closest existing columns."""
    available = {route.column for source in sources for route in source.routes()}
    files = ", ".join(source.path for source in sources)
    declared = f" (declared in {origin})" if origin else " (declared in 'uses')"
    closest = close_columns(column, available)
    hint = f"; closest existing: {', '.join(closest)}" if closest else "; no similar column exists"
    where = (
        f"; set the column in {origin.split(' of ')[0]} for this file's NanoAOD version"
        if origin and origin.startswith("config.x.")
        else ""
    )
    return f"column '{column}'{declared} is not in {files}{hint}{where}"


def resolve_columns(
    sources: list[EventSource],
    uses: Iterable[str] | Mapping[str, str],
    optional: Iterable[str] = (),
) -> list[list[Route]]:
    """Per source, the routes to read so that every ``uses`` pattern is served by some source.

    ``uses`` may map each pattern to where it is declared (named in the error). Patterns in ``optional`` are read
    where present and skipped silently where not.

    Raises:
        MissingColumnError: If a pattern matches no column of any source: one line naming the column, where it is
            declared, the files and the closest existing columns.
    """
    origins: Mapping[str, str] = uses if isinstance(uses, Mapping) else {}
    patterns = sorted(set(uses))
    # sorted: the routes of a ROOT file come in hash order, which changes between processes; the columns of every
    # output must not
    per_source = [
        sorted(filter_routes(source.routes(), [*patterns, *optional]), key=lambda route: route.fields)
        for source in sources
    ]
    for pattern in patterns:
        # the routes a pattern matches are among those selected above: no second pass over all routes of the files
        if not any(filter_routes(routes, [pattern]) for routes in per_source):
            raise MissingColumnError(missing_column_message(pattern, origins.get(pattern), sources))
    return per_source


def iter_event_chunks(
    sources: list[EventSource],
    uses: Iterable[str] | Mapping[str, str],
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    optional: Iterable[str] = (),
) -> Iterator[tuple[ak.Array, int, int]]:
    """Yield ``(events, start, stop)`` chunks merged from row-aligned sources (later sources override).

    Every pattern in ``uses`` must match a column; patterns in ``optional`` are read where present.

    At least one (possibly empty) chunk is yielded, so that an empty file still produces an output.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk size must be positive, got {chunk_size}")
    n_events = sources[0].n_events
    for source in sources[1:]:
        if source.n_events != n_events:
            raise ValueError(
                f"sources are not row-aligned: '{sources[0].path}' has {n_events} events, "
                f"'{source.path}' has {source.n_events}",
            )
    routes_per_source = resolve_columns(sources, uses, optional)
    for start in range(0, max(n_events, 1), chunk_size):
        stop = min(start + chunk_size, n_events)
        yield merged_chunk(sources, routes_per_source, start, stop), start, stop


def merged_chunk(sources: list[EventSource], routes_per_source: list[list[Route]], start: int, stop: int) -> ak.Array:
    """Entries start-stop of the sources' routes (:func:`resolve_columns`), later sources overriding earlier ones."""
    events = sources[0].read(routes_per_source[0], start, stop)
    for source, routes in zip(sources[1:], routes_per_source[1:], strict=True):
        if not routes:
            continue
        overlay = source.read(routes, start, stop)
        for route in routes:
            events = set_ak_column(events, route, overlay[route.fields])
    return events


class MemorySource:
    """The current chunk of a file being written, as a source: what a task just wrote, read without the file.

    Fused local execution (``cf.ReduceEvents``) hands the calibrated columns and the selection masks of a chunk
    to the next step through it, in place of the parquet files that the separate tasks read back. ``path`` is
    that file's, for messages.
    """

    def __init__(self, path: str, n_events: int) -> None:
        self.path = path
        self.n_events = n_events
        self.chunk: ak.Array | None = None
        self._range = (0, 0)
        self._routes: list[Route] = []

    def hold(self, chunk: ak.Array, start: int, stop: int) -> None:
        """Make ``chunk`` (entries start-stop) the data of this source."""
        self.chunk, self._range = chunk, (start, stop)
        self._routes = [Route(column) for column in chunk.layout.form.columns()]

    def routes(self) -> list[Route]:
        return list(self._routes)

    def read(self, routes: list[Route], start: int, stop: int) -> ak.Array:
        if self.chunk is None or self._range != (start, stop):
            raise ValueError(f"entries {start}-{stop} of '{self.path}' are not held (held: {self._range})")
        return self.chunk


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """Yield a temporary sibling path; on success it is renamed to ``path``, on error removed.

    A killed process leaves at most a hidden temporary file, never a partial file at ``path``.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        if storage_errno(error) is None:
            raise
        raise _storage_error(error, path) from error
    # a unique hidden name, created by the writer with the usual permissions (mkstemp would make it 0600)
    tmp_path = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_path)
        if storage_errno(error) is not None:
            raise _storage_error(error, path) from error  # type: ignore[arg-type]
        raise


def dump_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented json, atomically."""
    with atomic_path(path) as tmp_path, open(tmp_path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def load_json(path: str | os.PathLike[str]) -> Any:
    with open(path) as f:
        return json.load(f)


#: The codec of every parquet file written. On the chain's outputs (written, and read as often as the chain reads
#: them), snappy takes 18% less CPU time than zstd (level 1) and writes 18% larger files; no compression saves
#: another 6% with files 50% larger than zstd's (see the performance page).
PARQUET_COMPRESSION = "snappy"


#: The environment variable that says how many task processes of a run share the machine's cores (``law run
#: --workers N`` sets it for its task processes; unset means one).
TASK_PROCESSES_ENV = "CF_TASK_PROCESSES"

#: The thread of this process that encodes and writes the row groups of every ParquetWriter (made on first use;
#: a forked process makes its own, the parent's thread does not exist there).
_write_thread: dict[str, ThreadPoolExecutor] = {}
os.register_at_fork(after_in_child=_write_thread.clear)


def writes_in_background() -> bool:
    """Whether ParquetWriters write in a thread while the task computes its next chunk.

    They do when this process may use more cores than the run has task processes (``CF_TASK_PROCESSES``): with one
    worker on two cores, encoding and compressing a row group (most of a write) then takes the second core instead
    of the task's time. With as many task processes as cores the thread would only take turns with them.
    """
    return len(os.sched_getaffinity(0)) > task_processes()


def task_processes() -> int:
    """The number of task processes that share the machine's cores (``CF_TASK_PROCESSES``, 1 when unset).

    Raises:
        UserError: If the variable is set to anything but a positive integer.
    """
    value = os.environ.get(TASK_PROCESSES_ENV, "").strip()
    if not value:
        return 1
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"{TASK_PROCESSES_ENV} must be a positive integer (task processes), got '{value}'")
    return int(value)


def write_thread() -> ThreadPoolExecutor:
    """This process' writing thread; one for all writers, so that row groups are written in the order given."""
    if not _write_thread:
        _write_thread["executor"] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cf-parquet-writer")
    return _write_thread["executor"]


class ParquetWriter:
    """Streams chunks into one parquet file (one row group per chunk), renamed into place on close.

    Use as a context manager; on an exception nothing is left at the destination. Where a core is free
    (:func:`writes_in_background`), each row group is written by this process' writing thread while the caller goes
    on, one row group at a time per file: :meth:`write` waits for the previous one, and the file is closed and renamed
    into place only after the last one, so the file and its content are those of writing in the caller's thread.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._atomic = atomic_path(self.path)
        self._tmp_path = ""
        self._writer: pq.ParquetWriter | None = None
        self._background = writes_in_background()
        self._pending: Future[None] | None = None
        self.n_written = 0

    def __enter__(self) -> ParquetWriter:  # noqa: PYI034 (no subclasses)
        self._tmp_path = self._atomic.__enter__()
        return self

    def write(self, events: ak.Array) -> None:
        table = ak.to_arrow_table(events, extensionarray=False)
        self._finish_pending_write()
        if self._writer is None:
            self._writer = pq.ParquetWriter(
                self._tmp_path, table.schema, compression=PARQUET_COMPRESSION, use_dictionary=False
            )
        elif table.schema != self._writer.schema:
            table = table.cast(self._writer.schema)
        if self._background:
            self._pending = write_thread().submit(self._writer.write_table, table)
        else:
            self._writer.write_table(table)
        self.n_written += len(events)

    def _finish_pending_write(self) -> None:
        """Wait for the row group being written in the background; raise its error."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        try:
            self._finish_pending_write()
            if self._writer is not None:
                self._writer.close()
            elif exc_type is None:
                raise ValueError(f"nothing was written to '{self.path}': write() was never called")
        except BaseException as error:
            if exc is None:
                self._atomic.__exit__(type(error), error, error.__traceback__)
                raise
            # the error of the code that wrote is the one to report; the file is removed below
        return self._atomic.__exit__(exc_type, exc, tb)
