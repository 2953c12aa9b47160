# SPDX-License-Identifier: GPL-2.0-or-later
"""
Walk
----

Enumerate processes and VMAs, and walk each VMA's page tables one whole
table per physical read, yielding the raw leaf entries in its range. The
tables' shape (levels, entries, the bits of a table pointer) is the layout's
:class:`~drgn_p2p.records.Geometry`: 512-entry 4 KiB tables on x86-64, 2048
entries of 16 KiB on arm64 with 16K pages, a 16-entry root with 52-bit VA.

The walk never uses ``follow_phys()``: a table is read once and its
entries are examined in Python, and the last table read at each level is
kept so that neighbouring VMAs sharing a table do not read it again. Memory
stays flat: everything is a generator.

:meth:`PageTableWalker.walk_tables` hands over the PTE level a whole table
slice at a time (:class:`TableSlice`), so that the pipeline can judge a table of
identical entries with a few whole-table operations (:mod:`drgn_p2p.scan`);
:meth:`PageTableWalker.walk` expands the slices into single entries.
"""

import collections
import functools
import struct
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, NamedTuple, Optional, Tuple, Union

import drgn
from drgn import sizeof
from drgn.helpers.linux.mm import for_each_vma, virt_to_phys

from .records import Layout, Level, MapleTree, Vma, VmaStruct

__all__ = (
    "Process",
    "TableFault",
    "RawLeaf",
    "TableSlice",
    "NameCache",
    "share_names",
    "unshare_names",
    "process_vmas",
    "PageTableWalker",
)


@functools.lru_cache(maxsize=None)
def _table_format(entries: int) -> struct.Struct:
    """Little-endian ``u64[entries]`` (x86-64 and arm64 Linux are little-endian)."""
    return struct.Struct(f"<{entries}Q")


@dataclass(frozen=True)
class Process:
    """One address space: the first task found using a ``struct mm_struct``."""

    pid: int
    comm: str
    mm: drgn.Object  # struct mm_struct *
    threads: int


@dataclass(frozen=True)
class TableFault:
    """Something the audit could not read: a page-table page (``FaultError``;
    scope ``"table"``), a process's mm or VMAs or its ``struct pid``
    (``"process"``, *pid* set), a part of the PID table, task list or a task
    whose process is unknown (``"tasks"``), or a part of the pgmap table
    (``"pgmaps"``)."""

    level: Optional[Level]  # level of the entries the unreadable table holds
    va: int  # first address the table's entries map
    phys: int
    message: str
    scope: str = "table"
    pid: Optional[int] = None  # the process lost, for scope "process"


#: Levels whose leaves the walk hands over as :class:`TableSlice` stretches.
_HUGE_LEAF_LEVELS = (Level.PMD, Level.PUD)

#: ``(va, level, raw)`` of one non-empty leaf entry.
RawLeaf = Tuple[int, Level, int]

_ZERO_TABLE = bytes(1 << 16)


@dataclass(frozen=True)
class TableSlice:
    """Entries ``first..last`` (inclusive) of one page table, not all empty,
    whose non-empty entries are all leaves at *level*: a PTE table, or a
    stretch of huge PMD/PUD leaves (THPs, DAX, hugetlb, huge PFN maps).

    ``data`` is the whole table as read; entry *i* maps
    ``base + (i << shift)``.
    """

    base: int
    data: bytes
    first: int
    last: int
    #: log2 of what one entry maps: the page size at the PTE level (12, 14 or
    #: 16 with arm64's 16K and 64K granules), the level's span above it.
    shift: int
    level: Level = Level.PTE

    def leaves(self) -> Iterator[RawLeaf]:
        """The non-empty entries of the slice, as :data:`RawLeaf`, in address order."""
        first, step, level = self.first, 1 << self.shift, self.level
        va = self.base + first * step
        for raw in _table_format(self.last + 1 - first).unpack_from(self.data, first * 8):
            if raw:
                yield (va, level, raw)
            va += step


#: More VMAs than one mm can have (vm.max_map_count is an int; 4 Mi is far above any real use).
MAX_VMAS = 4 * 1024 * 1024


def _vma_flags(vma: drgn.Object) -> int:
    """The VMA's flags as one integer, bit N for flag bit N.

    vm_flags became a const member of a union with __vm_flags in v6.3
    (bc292ab00f6c, "mm: introduce vma->vm_flags wrapper functions"); 7.x
    puts it in a union with ``vma_flags_t flags``, a bitmap of
    NUM_VMA_FLAG_BITS (one word in 7.2, which vm_flags aliases). The bitmap
    is read whole where it exists, so flags past the first word, once a
    kernel has them, are not lost.
    """
    try:
        words = vma.flags.__vma_flags
    except AttributeError:
        return vma.vm_flags.value_()
    bits = sizeof(words[0]) * 8
    return sum(words[i].value_() << (bits * i) for i in range(len(words)))


@dataclass
class NameCache:
    """File paths by ``struct file *`` and symbol names by address, shared by
    the processes of one audit (forked processes share their files; most
    VMAs share a few ``vm_operations_struct``). Resolving a path or a symbol
    costs far more than walking a small process's page tables."""

    files: Dict[int, Optional[str]] = field(default_factory=dict)
    symbols: Dict[int, Optional[str]] = field(default_factory=dict)
    #: ``struct vm_operations_struct *`` → its :class:`OpsHooks`.
    hooks: Dict[int, "OpsHooks"] = field(default_factory=dict)
    #: ``struct file *`` → ``mapping_can_writeback(file->f_mapping)``.
    writeback: Dict[int, bool] = field(default_factory=dict)


_NAMES_KEY = "drgn_p2p_names"
#: Where :func:`share_names` keeps, across audits, what never changes in the kernel image.
_IMAGE_KEY = "drgn_p2p_image_names"
#: Where :func:`drgn_p2p.layout.read_layout` caches the layout on a program.
_LAYOUT_KEY = "drgn_p2p_layout"
_U64 = struct.Struct("<Q")


class _ImageCache(dict):  # type: ignore[type-arg]
    """A cache by address for one audit whose entries for addresses in
    ``[lo, hi)`` go to *image*, a dict kept across audits: a symbol name in
    the kernel image, or a ``const`` structure in its read-only data, is the
    same for the program's life (a module's may go with the module)."""

    def __init__(self, image: Dict[int, object], lo: int, hi: int) -> None:
        super().__init__()
        self._image, self._lo, self._hi = image, lo, hi

    def __contains__(self, address: object) -> bool:
        if isinstance(address, int) and self._lo <= address < self._hi:
            return address in self._image
        return super().__contains__(address)

    def __getitem__(self, address: int) -> object:
        if self._lo <= address < self._hi:
            return self._image[address]
        return super().__getitem__(address)

    def __setitem__(self, address: int, value: object) -> None:
        if self._lo <= address < self._hi:
            self._image[address] = value
        else:
            super().__setitem__(address, value)


def _symbol_range(prog: drgn.Program, first: str, end: str) -> Tuple[int, int]:
    """``[address of first, address of end)``, empty when either symbol is missing."""
    try:
        return prog.symbol(first).address, prog.symbol(end).address
    except LookupError:
        return 0, 0


def share_names(prog: drgn.Program) -> None:
    """Start a :class:`NameCache` that :func:`process_vmas` on *prog* uses until :func:`unshare_names`.

    Symbol names of kernel-image addresses (``_stext`` to ``_end``) and the
    hooks of ``vm_operations_struct`` in its read-only data
    (``__start_rodata`` to ``__end_rodata``) are kept for the next audits too.
    """
    cache = getattr(prog, "cache", None)
    if cache is None:
        return
    image = cache.get(_IMAGE_KEY)
    if image is None:
        image = cache[_IMAGE_KEY] = (_symbol_range(prog, "_stext", "_end"), {},
                                     _symbol_range(prog, "__start_rodata", "__end_rodata"), {})
    (text_lo, text_hi), symbols, (ro_lo, ro_hi), hooks = image
    cache[_NAMES_KEY] = NameCache(symbols=_ImageCache(symbols, text_lo, text_hi),
                                  hooks=_ImageCache(hooks, ro_lo, ro_hi))


def unshare_names(prog: drgn.Program) -> None:
    """Drop the cache started by :func:`share_names` (paths and modules may change later)."""
    cache = getattr(prog, "cache", None)
    if cache is not None:
        cache.pop(_NAMES_KEY, None)


def _file_name(prog: drgn.Program, file: int, names: Optional[Dict[int, Optional[str]]] = None) -> Optional[str]:
    """The path of ``struct file *`` *file* (``None`` for NULL), cached in *names* by pointer."""
    if not file:
        return None
    if names is not None and file in names:
        return names[file]
    obj = drgn.Object(prog, "struct file *", file)
    try:
        from drgn.helpers.linux.fs import d_path

        name: Optional[str] = d_path(obj.f_path).decode(errors="replace")
    except (drgn.FaultError, LookupError, ValueError):
        try:
            name = obj.f_path.dentry.d_name.name.string_().decode(errors="replace")
        except drgn.FaultError:
            name = "?"
    if names is not None:
        names[file] = name
    return name


def _symbol_name(
    prog: drgn.Program, address: int, names: Optional[Dict[int, Optional[str]]] = None
) -> Optional[str]:
    if not address:
        return None
    if names is not None and address in names:
        return names[address]
    try:
        name = prog.symbol(address).name
    except LookupError:
        name = hex(address)
    if names is not None:
        names[address] = name
    return name


class OpsHooks(NamedTuple):
    """The hooks of one ``struct vm_operations_struct`` that GUP's paths call."""

    #: Symbol name of ``access`` (None: NULL), what ``__access_remote_vm()``
    #: falls back to when GUP fails.
    access: Optional[str]
    #: ``fault`` is set (``do_fault()`` of a hole is VM_FAULT_SIGBUS without it).
    fault: bool
    #: ``page_mkwrite`` or ``pfn_mkwrite`` is set (``vm_ops_needs_writenotify()``).
    mkwrite: bool


#: vm_ops NULL: an anonymous VMA (faults are do_anonymous_page()'s).
_NO_OPS = OpsHooks(None, True, False)


def _ops_hooks(
    prog: drgn.Program, ops: int, cache: Optional[Dict[int, OpsHooks]] = None,
    symbols: Optional[Dict[int, Optional[str]]] = None,
) -> OpsHooks:
    """The :class:`OpsHooks` of ``struct vm_operations_struct *`` *ops*, cached by *ops*."""
    if not ops:
        return _NO_OPS
    if cache is not None and ops in cache:
        return cache[ops]
    try:
        obj = drgn.Object(prog, "struct vm_operations_struct", address=ops).read_()
        hooks = OpsHooks(_symbol_name(prog, obj.access.value_(), symbols), bool(obj.fault.value_()),
                         bool(obj.page_mkwrite.value_() or obj.pfn_mkwrite.value_()))
    except (drgn.FaultError, LookupError):
        hooks = OpsHooks("?", True, False)
    if cache is not None:
        cache[ops] = hooks
    return hooks


#: VM_WRITE, VM_SHARED and VM_PFNMAP: the same bits from 6.1 to 7.2 (include/linux/mm.h).
_VM_WRITE, _VM_SHARED, _VM_PFNMAP = 1 << 1, 1 << 3, 1 << 10


def _file_writeback(prog: drgn.Program, file: int, cache: Optional[Dict[int, bool]] = None) -> bool:
    """``mapping_can_writeback(file->f_mapping)`` of ``struct file *`` *file*:
    its backing device has ``BDI_CAP_WRITEBACK`` (bit 0, 6.1 to 7.2), as
    ``inode_to_bdi()`` finds it (a block device's inode: its disk's, which
    writes back; else ``sb->s_bdi``). Cached by *file*; unreadable: False."""
    if cache is not None and file in cache:
        return cache[file]
    try:
        inode = drgn.Object(prog, "struct file *", file).f_mapping.host
        if not inode.value_():
            can = False  # noop_backing_dev_info
        else:
            sb = inode.i_sb
            try:
                blockdev = prog["blockdev_superblock"].value_()
            except KeyError:
                blockdev = None
            can = sb.value_() == blockdev or bool(sb.s_bdi.capabilities.value_() & 1)
    except (drgn.FaultError, LookupError):
        can = False
    if cache is not None:
        cache[file] = can
    return can


def _dirty_tracking(prog: drgn.Program, flags: int, file: int, hooks: OpsHooks,
                    cache: Optional[Dict[int, bool]]) -> bool:
    """``vma_needs_dirty_tracking()`` (mm/mmap.c since 6.5, mm/vma.c since 6.12):
    shared and writable, and the vm_ops want write notification or the file
    writes back (not for VM_PFNMAP)."""
    if flags & (_VM_WRITE | _VM_SHARED) != _VM_WRITE | _VM_SHARED:
        return False
    if hooks.mkwrite:
        return True
    return bool(file) and not flags & _VM_PFNMAP and _file_writeback(prog, file, cache)


#: The maple tree's node encoding (include/linux/maple_tree.h): an entry is a
#: node when ``xa_is_node()`` and above 4096; its type sits in bits 3-6; the
#: node is 256-byte aligned. ``XA_ZERO_ENTRY`` (xa_mk_internal(257)) is a
#: reserved, empty slot.
_MAPLE_NODE_MASK = 255
_MAPLE_LEAF_64, _MAPLE_RANGE_64, _MAPLE_ARANGE_64 = 1, 2, 3
_XA_ZERO_ENTRY = (257 << 2) | 2


def maple_entries(read: Callable[[int, int], bytes], root: int, tree: MapleTree) -> Iterator[int]:
    """The non-empty entries (``void *``) of a maple tree whose ``ma_root`` is *root*, in index order.

    drgn's ``mt_for_each()``, with one read of each node (``read(address,
    size)`` of virtual memory) instead of one per pivot and slot. A node type
    it cannot hold, or more nodes than any mm has, is a :class:`ValueError`.
    """
    if not (root & 3 == 2 and root > 4096):
        if root:
            yield root
        return
    queue = collections.deque(((root, 0, (1 << 64) - 1),))
    nodes = 0
    while queue:
        entry, lo, hi = queue.popleft()
        nodes += 1
        if nodes > MAX_VMAS:
            raise ValueError(f"more than {MAX_VMAS} maple nodes: the VMA tree is corrupt or changing")
        kind = (entry >> 3) & 0xF
        if kind == _MAPLE_ARANGE_64:
            pivot_at, npivots, slot_at, nslots, end_at = tree.arange64
        elif kind in (_MAPLE_LEAF_64, _MAPLE_RANGE_64):
            pivot_at, npivots, slot_at, nslots, end_at = tree.range64
        else:
            raise ValueError(f"maple node {entry:#x} has unknown type {kind}")
        data = read(entry & ~_MAPLE_NODE_MASK, tree.node_size)
        pivots = struct.unpack_from(f"<{npivots}Q", data, pivot_at)
        slots = struct.unpack_from(f"<{nslots}Q", data, slot_at)
        if kind == _MAPLE_ARANGE_64:
            end = data[end_at]
        else:
            last = pivots[-1]
            end = data[end_at] if not last else (npivots - 1 if last == hi else npivots)
        if end >= nslots:
            raise ValueError(f"maple node {entry:#x} claims {end + 1} slots of {nslots}")
        if kind == _MAPLE_LEAF_64:
            for slot in slots[: end + 1]:
                if slot and slot != _XA_ZERO_ENTRY:
                    yield slot
        else:
            prev = lo
            for offset in range(end):
                pivot = pivots[offset]
                queue.append((slots[offset], prev, pivot))
                prev = pivot + 1
            queue.append((slots[end], prev, hi))


def _vmas_of(prog: drgn.Program, mm: drgn.Object, tree: Optional[MapleTree]) -> Iterator[int]:
    """Addresses of the ``struct vm_area_struct`` of ``struct mm_struct *`` *mm*, in address order."""
    if tree is None:
        for vma in for_each_vma(mm):
            yield vma.value_()
        return
    read = prog.read
    yield from maple_entries(lambda address, size: read(address, size), prog.read_u64(mm.value_() + tree.root), tree)


def vma_members(data: bytes, fields: VmaStruct) -> Tuple[int, int, int, int, int, int]:
    """``(vm_start, vm_end, flags, vm_pgoff, vm_file, vm_ops)`` of a ``struct vm_area_struct`` read whole."""
    unpack = _U64.unpack_from
    words = struct.unpack_from(f"<{fields.flags_words}Q", data, fields.flags)
    flags = words[0] if len(words) == 1 else sum(w << (64 * i) for i, w in enumerate(words))
    return (unpack(data, fields.start)[0], unpack(data, fields.end)[0], flags, unpack(data, fields.pgoff)[0],
            unpack(data, fields.file)[0], unpack(data, fields.ops)[0])


def process_vmas(
    prog: drgn.Program,
    process: Process,
    start: int = 0,
    end: int = 1 << 64,
    names: Optional[NameCache] = None,
    layout: Optional[Layout] = None,
) -> Iterator[Vma]:
    """Yield the :class:`Vma` records of *process* that overlap ``[start, end)``.

    :param names: a cache to share between the processes of one audit;
        by default the one :func:`share_names` started on *prog*, if any.
    :param layout: with its :attr:`~Layout.vma_struct`, each VMA is one read
        of the whole ``struct vm_area_struct``, and with its
        :attr:`~Layout.vma_tree` each maple node one read (by default the
        layout cached on *prog*, if any); without, drgn's ``for_each_vma()``
        and one read per member.
    """
    if names is None:
        names = getattr(prog, "cache", {}).get(_NAMES_KEY)
    if layout is None:
        layout = getattr(prog, "cache", {}).get(_LAYOUT_KEY)
    files = None if names is None else names.files
    symbols = None if names is None else names.symbols
    hook_cache = None if names is None else names.hooks
    writeback = None if names is None else names.writeback
    fields = layout.vma_struct if layout is not None else None
    pid, comm, mm = process.pid, process.comm, process.mm.value_()
    if fields is not None:
        read = prog.read
        tree = layout.vma_tree if layout is not None else None
        for count, address in enumerate(_vmas_of(prog, process.mm, tree)):
            if count >= MAX_VMAS:
                raise ValueError(f"more than {MAX_VMAS} VMAs: the VMA tree is corrupt or changing")
            vm_start, vm_end, flags, pgoff, file, ops = vma_members(read(address, fields.size), fields)
            if vm_end <= start or vm_start >= end:
                continue
            hooks = _ops_hooks(prog, ops, hook_cache, symbols)
            yield Vma(pid=pid, comm=comm, mm=mm, address=address, start=vm_start, end=vm_end, flags=flags,
                      pgoff=pgoff, file=_file_name(prog, file, files), ops=_symbol_name(prog, ops, symbols),
                      access=hooks.access, fault=hooks.fault,
                      dirty_tracking=_dirty_tracking(prog, flags, file, hooks, writeback))
        return
    for count, vma in enumerate(for_each_vma(process.mm)):
        if count >= MAX_VMAS:
            # A maple tree read while it changes (or a damaged vmcore) can loop.
            raise ValueError(f"more than {MAX_VMAS} VMAs: the VMA tree is corrupt or changing")
        vm_start, vm_end = vma.vm_start.value_(), vma.vm_end.value_()
        if vm_end <= start or vm_start >= end:
            continue
        flags, file, ops = _vma_flags(vma), vma.vm_file.value_(), vma.vm_ops.value_()
        hooks = _ops_hooks(prog, ops, hook_cache, symbols)
        yield Vma(pid=pid, comm=comm, mm=mm, address=vma.value_(), start=vm_start, end=vm_end,
                  flags=flags, pgoff=vma.vm_pgoff.value_(), file=_file_name(prog, file, files),
                  ops=_symbol_name(prog, ops, symbols), access=hooks.access, fault=hooks.fault,
                  dirty_tracking=_dirty_tracking(prog, flags, file, hooks, writeback))


class PageTableWalker:
    """Walks the page tables of one mm, one whole table per read.

    The walk always terminates and reads a bounded number of tables, whatever
    the tables hold (a live kernel changing them between reads, an entry
    pointing back at its own table or an ancestor, PFNs past the end of
    memory): it goes no deeper than the paging levels, and reads a table
    only for a table entry that maps part of its range. An unreadable table
    is a :class:`TableFault`.

    :param read: ``read(phys, size) -> bytes`` of physical memory; raises
        :class:`drgn.FaultError` when the memory cannot be read.
    :param pgd_phys: physical address of the top-level table (``mm->pgd``).
    """

    def __init__(
        self,
        read: Callable[[int, int], bytes],
        layout: Layout,
        pgd_phys: int,
    ) -> None:
        self._read = read
        self._pgd_phys = pgd_phys
        geometry = layout.geometry
        self._table_mask, self._table_bits = geometry.table_mask, geometry.table_bits
        self._table_phys = geometry.address
        self._page_shift = geometry.page_shift
        self._levels = tuple(t.level for t in geometry.levels)
        self._shifts = tuple(t.shift for t in geometry.levels)
        #: Entries per table at each depth (the root may hold fewer than a page).
        self._entries = tuple(t.entries for t in geometry.levels)
        #: The level a leaf found at each depth is reported at, named by its
        #: span (with 4 levels of 4 KiB a top-level entry is a P4D leaf):
        #: Leaf.size then gives its true range.
        self._leaf_levels = tuple(t.leaf_level for t in geometry.levels)
        #: Per depth, the last table read: ``(phys, data, unpacked entries or None)``.
        self._cache: Dict[int, List] = {}
        self.tables_read = 0
        #: Distinct page-table pages that could not be read (a table shared
        #: by several VMAs counts once; each VMA still gets its TableFault).
        self.faults = 0
        self._unreadable: Dict[int, str] = {}

    @classmethod
    def for_mm(cls, prog: drgn.Program, layout: Layout, mm: drgn.Object) -> "PageTableWalker":
        """Walker for ``struct mm_struct *`` *mm* of *prog*."""
        pgd_phys = virt_to_phys(prog, mm.pgd.value_()).value_()

        def read(phys: int, size: int) -> bytes:
            return prog.read(phys, size, True)

        return cls(read, layout, pgd_phys)

    def _entry(self, depth: int, phys: int) -> List:
        """The cache slot ``[phys, data, entries]`` of the table at *phys*, read if needed."""
        cached = self._cache.get(depth)
        if cached is None or cached[0] != phys:
            if phys in self._unreadable:
                raise drgn.FaultError(self._unreadable[phys], phys)
            size = self._entries[depth] * 8
            data = self._read(phys, size)
            self.tables_read += 1
            if len(data) != size:
                raise drgn.FaultError(f"short read of a page table ({len(data)} bytes)", phys)
            cached = [phys, data, None]
            self._cache[depth] = cached
        return cached

    def _table(self, depth: int, phys: int) -> Tuple[int, ...]:
        """The entries of the table at *phys* (read once, unpacked once)."""
        cached = self._entry(depth, phys)
        if cached[2] is None:
            cached[2] = _table_format(self._entries[depth]).unpack(cached[1])
        return cached[2]

    def walk(self, start: int, end: int) -> Iterator[Union[RawLeaf, TableFault]]:
        """Yield every non-empty leaf entry mapping ``[start, end)``, in address order.

        Leaves are PTEs, huge PMD/PUD leaves (x86 ``_PAGE_PSE``, arm64 block
        descriptors), and any
        non-present, non-zero entry at PUD/PMD/PTE level (swap-format
        entries). An unreadable table yields a :class:`TableFault` and the
        walk continues after it.
        """
        for item in self._walk(0, self._pgd_phys, start, end, 0):
            if isinstance(item, TableSlice):
                yield from item.leaves()
            else:
                yield item

    def walk_tables(self, start: int, end: int) -> Iterator[Union[RawLeaf, TableFault, TableSlice]]:
        """Like :meth:`walk`, but the PTEs of each PTE table come as one
        :class:`TableSlice`, and so does each stretch of consecutive PMD or PUD
        leaves (huge leaves and swap-format entries between table entries).

        Slices whose entries are all empty are not yielded.
        """
        return self._walk(0, self._pgd_phys, start, end, 0)

    def _walk(
        self, depth: int, phys: int, start: int, end: int, base: int
    ) -> Iterator[Union[RawLeaf, TableFault, TableSlice]]:
        level = self._levels[depth]
        shift = self._shifts[depth]
        first = (start - base) >> shift if start > base else 0
        last = min(self._entries[depth] - 1, (end - 1 - base) >> shift)
        try:
            if depth == len(self._levels) - 1:
                data = self._entry(depth, phys)[1]
                if data[first * 8 : (last + 1) * 8] != _ZERO_TABLE[first * 8 : (last + 1) * 8]:
                    yield TableSlice(base, data, first, last, self._page_shift)
                return
            entries = self._table(depth, phys)
            data = self._cache[depth][1]
        except drgn.FaultError as e:
            if phys not in self._unreadable:
                self._unreadable[phys] = str(e)
                self.faults += 1
            yield TableFault(level, max(start, base), phys, str(e))
            return
        span = 1 << shift
        table_mask, table_bits = self._table_mask, self._table_bits
        leaf_level = self._leaf_levels[depth]
        # Consecutive PMD/PUD leaves (a THP or DAX range, a huge PFN map) go
        # out as one TableSlice, so that they can be judged whole.
        group = leaf_level in _HUGE_LEAF_LEVELS
        leaves_from = -1
        for i in range(first, last + 1):
            raw = entries[i]
            if raw and raw & table_mask != table_bits:
                # A huge leaf, a swap-format entry, or (at PGD/P4D level,
                # never valid for user space) something the decoder will
                # report as garbage rather than have it skipped.
                if group:
                    if leaves_from < 0:
                        leaves_from = i
                else:
                    yield (base + (i << shift), leaf_level, raw)
                continue
            if leaves_from >= 0:
                yield TableSlice(base, data, leaves_from, i - 1, shift, leaf_level)
                leaves_from = -1
            if raw:
                va = base + (i << shift)
                yield from self._walk(
                    depth + 1, self._table_phys(raw), max(start, va), min(end, va + span), va
                )
        if leaves_from >= 0:
            yield TableSlice(base, data, leaves_from, last, shift, leaf_level)

    def path(self, va: int) -> List[Tuple[Level, int, int]]:
        """The entries translating *va*, top level first: ``(level, entry_phys, raw)``.

        Stops at the first leaf or non-present entry (crash's ``vtop`` walk).
        """
        result: List[Tuple[Level, int, int]] = []
        phys = self._pgd_phys
        last = len(self._levels) - 1
        for depth, (level, shift) in enumerate(zip(self._levels, self._shifts)):
            index = (va >> shift) & (self._entries[depth] - 1)
            raw = self._table(depth, phys)[index]
            result.append((level, phys + index * 8, raw))
            if depth == last or raw & self._table_mask != self._table_bits:
                break
            phys = self._table_phys(raw)
        return result
