"""The ledger's lines as columns: where each field is, what it holds, which lines agree.

A history is one byte buffer (the ledger's tab-separated lines joined by newlines).
Nothing here makes a Python object per line: numpy finds the separators, reads the
few bytes a verdict looks at as 8-byte words straight out of the buffer (an unaligned
``uint64`` view, one gather per word), and numbers equal fields by sorting a hash of
their words — then checks, word by word, that every line of a group holds exactly the
bytes of its first line, so a hash collision never merges two values (it is reported
and the caller takes its exact path). Every pass is over arrays of one int per line.

What the reference codec would reject, or parse otherwise, is not vouched for
(``Unvouched``): a byte outside printable ASCII, a line without exactly ten fields, a
time ``float()`` would not read as a plain decimal, a pid or attempt that is not
digits, a detail that is not JSON. Those lines are left to the reference.
"""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt

Ints = npt.NDArray[np.int64]
Words = npt.NDArray[np.uint64]
Bools = npt.NDArray[np.bool_]
Floats = npt.NDArray[np.float64]
Buffer = bytes | bytearray | memoryview  # the ledger's lines, joined by newlines

FIELDS = 10  # t, kind, work_id, mechanism, instance, pid, attempt, exec_id, detail, run
PAD = 512  # widest field the exact (sorting) numbering cuts into a column
_BLOCK = 1 << 15  # rows cut into a column at a time
WIDEST = 64  # widest field held as words (wider: numbered exactly, by sorting)
_U64 = np.dtype("<u8")
# the low r bytes of a word, r = 0..8
_MASKS = np.array([(1 << (8 * r)) - 1 for r in range(9)], dtype=np.uint64)
_ZEROS = np.uint64(0x3030303030303030)  # "00000000"
_NIBBLES = np.uint64(0xF0F0F0F0F0F0F0F0)
_SIXES = np.uint64(0x0606060606060606)
_THREES = np.uint64(0x3333333333333333)
_P1 = np.uint64(0x9E3779B97F4A7C15)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)


class Unvouched(Exception):
    """The columnar decode cannot vouch for this buffer: the reference judges it."""


class Collision(Exception):
    """Two different values hashed alike: number them the exact way."""


def _all_digits(words: Words) -> Bools:
    """Which words are eight ASCII digits (bytes below 0x80, as the buffer's are)."""
    high = words & _NIBBLES
    carried = ((words + _SIXES) & _NIBBLES) >> np.uint64(4)
    result: Bools = (high | carried) == _THREES
    return result


class Field:
    """One field of some lines: where each begins, its length, and its bytes as words
    (word ``j`` holds bytes ``8j`` to ``8j+7``, NUL past the field's end; no field holds
    a NUL, so equal words mean equal bytes)."""

    def __init__(self, starts: Ints, lengths: Ints, words: list[Words]) -> None:
        self.starts, self.lengths, self.words = starts, lengths, words

    def hashed(self) -> Words:
        """A 64-bit hash of each field's words."""
        h = self.words[0] * _P1
        for word in self.words[1:]:
            h ^= h >> np.uint64(29)
            h += word
            h *= _P2
        h ^= h >> np.uint64(31)
        h *= _P3
        h ^= h >> np.uint64(29)
        return h

    def strings(self, rows: Ints) -> list[str]:
        """The fields of ``rows`` as ``str``, from their words (a NUL is padding)."""
        if not rows.size:
            return []
        table = np.zeros((rows.size, len(self.words) + 1), dtype=_U64)
        for j, word in enumerate(self.words):
            table[:, j] = word[rows]
        table[:, -1] = 9  # a tab after each
        text = table.view(np.uint8).ravel()
        found: list[str] = text[text != 0].tobytes().decode("ascii").split("\t")[:-1]
        return found

    def same(self, a: Ints, b: Ints) -> bool:
        """Do fields ``a`` and ``b`` hold the same bytes, pair by pair?"""
        return all(bool((word[a] == word[b]).all()) for word in self.words)


class Lines:
    """Where every field of every line is; the words, hashes and numbering of fields."""

    def __init__(self, buf: Buffer, count: int) -> None:
        size = len(buf)
        if size < 8:  # the word view needs eight bytes
            buf = bytes(buf) + b"\0" * (8 - size)
        arr = np.frombuffer(buf, dtype=np.uint8)[:size]
        # Printable ASCII and the separators only: the reference decodes these alike.
        if arr.size and int(arr.max()) > 0x7E:
            raise Unvouched("a non-ASCII byte")
        control = np.empty(size + 1, dtype=bool)  # and the buffer's end: the last line's
        np.less(arr, 0x20, out=control[:-1])
        control[-1] = True
        ends = np.flatnonzero(control)
        if ends.size != FIELDS * count:
            raise Unvouched("not ten fields a line")
        del control
        grid = ends.reshape(count, FIELDS)
        # every control byte a tab, but every tenth (a line's end) a newline
        separators = arr[ends[:-1]]
        if (int(np.count_nonzero(separators == 9)) != (FIELDS - 1) * count
                or not bool((separators[FIELDS - 1::FIELDS] == 10).all())):
            raise Unvouched("not ten fields a line, or a control byte")
        self.buf = buf
        self.size = size
        self.count = count
        self.arr = arr
        self.grid = grid  # row j: the nine tabs of line j, then its end
        self.line_starts = np.empty(count, dtype=np.int64)
        self.line_starts[0] = 0
        self.line_starts[1:] = grid[:-1, -1] + 1
        self._last = len(buf) - 8
        # 8 bytes from any byte offset, little-endian: one gather reads a word
        self._u64 = np.ndarray((self._last + 1,), dtype=_U64, buffer=buf, offset=0,
                               strides=(1,))

    # --- where fields are ---------------------------------------------------------------
    def bounds(self, k: int, rows: Ints | None = None) -> tuple[Ints, Ints]:
        """Where field ``k`` of every line (or of ``rows``) begins, and its length."""
        if rows is None:
            ends = self.grid[:, k]
            starts = self.line_starts if k == 0 else self.grid[:, k - 1] + 1
        else:
            ends = self.grid[rows, k]
            starts = self.line_starts[rows] if k == 0 else self.grid[rows, k - 1] + 1
        return starts, ends - starts

    def line(self, row: int) -> bytes:
        return bytes(self.buf[int(self.line_starts[row]):int(self.grid[row, -1])])

    # --- words ----------------------------------------------------------------------------
    def words(self, at: Ints) -> Words:
        """The 8 bytes from each offset of ``at`` (bytes past the buffer read as 0)."""
        if not at.size or int(at.max()) <= self._last:
            within: Words = self._u64[at]
            return within
        out: Words = self._u64[np.minimum(at, self._last)]
        over = np.flatnonzero(at > self._last)
        if over.size:  # the buffer's last few bytes: shift them down
            past = at[over] - self._last
            shifted = out[over] >> (np.minimum(past, 7) * 8).astype(np.uint64)
            out[over] = np.where(past < 8, shifted, np.uint64(0))
        return out

    def word(self, starts: Ints, lengths: Ints, j: int) -> Words:
        """Word ``j`` (bytes ``8j`` to ``8j+7``) of each field, NUL past its length."""
        left = np.clip(lengths - 8 * j, 0, 8)
        return self.words(starts + 8 * j) & _MASKS[left]

    def field(self, k: int, rows: Ints | None = None) -> Field:
        """Field ``k`` of every line (or of ``rows``), its words read out of the buffer."""
        starts, lengths = self.bounds(k, rows)
        widest = int(lengths.max(initial=0))
        if widest > WIDEST:
            raise Collision  # too wide to hold as words: the exact numbering
        return Field(starts, lengths, [self.word(starts, lengths, j)
                                       for j in range(max(1, (widest + 7) // 8))])

    def strings(self, k: int, starts: Ints, lengths: Ints) -> list[str]:
        """Field ``k`` (never the last: a tab follows it) at ``starts`` as ``str``."""
        if not starts.size:
            return []
        assert k < FIELDS - 1
        spans = lengths + 1  # with the tab after each
        total = int(spans.sum())
        offsets = np.cumsum(spans) - spans
        at = np.repeat(starts - offsets, spans) + np.arange(total)
        return self.arr[at].tobytes().decode("ascii").split("\t")[:-1]

    def column(self, starts: Ints, lengths: Ints) -> npt.NDArray[np.bytes_]:
        """The fields as a fixed-width bytes column (for exact, sorting comparisons)."""
        width = max(1, int(lengths.max(initial=0)))
        if width > PAD:
            raise Unvouched("a field too wide for a column")
        out = np.zeros((starts.size, width), dtype=np.uint8)
        cols = np.arange(width)
        for a in range(0, starts.size, _BLOCK):  # a block of rows at a time: bounded memory
            at = starts[a:a + _BLOCK, None] + cols
            inside = cols < lengths[a:a + _BLOCK, None]
            out[a:a + _BLOCK][inside] = self.arr[at[inside]]
        return out.view(f"S{width}").ravel()

    # --- what the reference parses but no verdict reads ------------------------------------
    def check_times(self) -> None:
        """Every line's time is a plain decimal ``float()`` reads (the reference parses
        them all): digits with at most one point, not a lone point."""
        starts, lengths = self.bounds(0)
        # the ledger's own: 17 bytes, a point at 10 (``%.6f`` of this century's times)
        usual = lengths == 17
        w1 = self.words(starts + 8)
        usual &= (w1 >> np.uint64(16)) & np.uint64(0xFF) == np.uint64(ord("."))
        ok = usual & _all_digits(self.words(starts))
        ok &= _all_digits((w1 & ~np.uint64(0xFF0000)) | np.uint64(0x300000))
        last = self.words(starts + 9) & np.uint64(0xFF00000000000000)  # byte 16
        ok &= _all_digits(last | np.uint64(0x30303030303030))
        rest = np.flatnonzero(~ok)
        if rest.size:
            self._check_other_times(rest)

    def _check_other_times(self, rows: Ints) -> None:
        starts, lengths = self.bounds(0, rows)
        if not bool((lengths > 0).all()):
            raise Unvouched("an empty time")
        width = int(lengths.max())
        if width > 64:
            raise Unvouched("a time too long to vouch for")
        col = self.column(starts, lengths)
        raw = col.view(np.uint8).reshape(rows.size, -1)
        digit = (raw >= ord("0")) & (raw <= ord("9"))
        point = raw == ord(".")
        pad = raw == 0
        if not bool((digit | point | pad).all()):
            # a sign, an exponent, ``inf``...: float()'s grammar, not the ledger's
            raise Unvouched("a time that is not a plain decimal")
        if int(np.count_nonzero(point, axis=1).max(initial=0)) > 1:
            raise Unvouched("a time with two points")
        if not bool(digit.any(axis=1).all()):
            raise Unvouched("a lone point for a time")

    def times(self, rows: Ints) -> Floats:
        """The times of ``rows`` (vouched for by ``check_times``), parsed as ``float()``
        does: numpy's parse is correctly rounded too."""
        if not rows.size:
            return np.zeros(0)
        starts, lengths = self.bounds(0, rows)
        result: Floats = self.column(starts, lengths).astype(np.float64)
        return result

    def check_numbers(self) -> None:
        """pid and attempt are plain digits (``int()`` of each line in the reference)."""
        pid_at, pid_len = self.bounds(5)
        att_len = self.grid[:, 6] - self.grid[:, 5] - 1
        if not bool((pid_len > 0).all()) or not bool((att_len > 0).all()):
            raise Unvouched("an empty pid or attempt")
        both = pid_len + 1 + att_len  # "pid TAB attempt"
        short = both <= 8
        word = self.words(pid_at) & _MASKS[np.minimum(both, 8)]
        fill = _ZEROS & ~_MASKS[np.minimum(both, 8)]
        tab_at = (np.minimum(pid_len, 7) * 8).astype(np.uint64)
        word ^= np.uint64(0x39) << tab_at  # the tab (0x09) reads as "0" (0x30)
        ok = short & _all_digits(word | fill)
        rest = np.flatnonzero(~ok)
        if rest.size:
            for k in (5, 6):
                starts, lengths = self.bounds(k, rest)
                if int(lengths.max()) > 64:
                    raise Unvouched("a pid or attempt too long to vouch for")
                raw = self.column(starts, lengths).view(np.uint8).reshape(rest.size, -1)
                if not bool((((raw >= ord("0")) & (raw <= ord("9"))) | (raw == 0)).all()):
                    raise Unvouched("a pid or attempt that is not a plain number")

    def check_details(self) -> None:
        """A detail is empty or JSON (the reference loads each)."""
        starts, lengths = self.bounds(8)
        for row in np.flatnonzero(lengths).tolist():
            at = int(starts[row])
            try:
                json.loads(bytes(self.buf[at:at + int(lengths[row])]))
            except ValueError:
                raise Unvouched("a detail that is not JSON") from None


# --- grouping equal values --------------------------------------------------------------------
def groups(keys: Words, bits: int = 64, whole: bool = False) -> tuple[Ints, Bools]:
    """Sort ``keys`` (values below ``2**bits``; ``bits=64``: hashes, of which the top
    bits are enough unless ``whole``): the order (equal keys by position), and where
    each group of equal keys begins in that order."""
    n = keys.size
    index_bits = max(1, (n - 1).bit_length())
    if bits + index_bits > 64:
        if bits < 64 or whole:  # keys too wide to pack with their position
            order = np.argsort(keys, kind="stable")
            sorted_keys = keys[order]
            new = np.empty(n, dtype=bool)
            new[:1] = True
            new[1:] = sorted_keys[1:] != sorted_keys[:-1]
            return order, new
        keys = keys >> np.uint64(index_bits)
    # key and position in one word: a plain (SIMD) sort, no argsort
    packed = (keys << np.uint64(index_bits)) | np.arange(n, dtype=np.uint64)
    packed.sort()
    order = (packed & np.uint64((1 << index_bits) - 1)).astype(np.int64)
    packed >>= np.uint64(index_bits)
    new = np.empty(n, dtype=bool)
    new[:1] = True
    new[1:] = packed[1:] != packed[:-1]
    return order, new


def numbered(field: Field, also: Ints | None = None,
             ordered: bool = True) -> tuple[Ints, Ints]:
    """Number the fields, equal bytes alike, counting distinct values in order of first
    appearance (``ordered``; else in any order); and the index of each value's first
    field. With ``also``, two fields are alike only if their ``also`` agree as well.
    Raises ``Collision`` if two different values hashed alike."""
    n = field.starts.size
    if not n:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    h = field.hashed()
    if also is not None:
        h ^= (also.astype(np.uint64) + np.uint64(1)) * _P3
        h *= _P1
        h ^= h >> np.uint64(32)
    for whole in (False, True):  # the top bits of the hash; else all of them
        order, new = groups(h, whole=whole)
        group = np.cumsum(new) - 1
        first = order[new]  # each group's first field (by position)
        rest = np.flatnonzero(~new)
        a, b = order[rest], first[group[rest]]
        if field.same(a, b) and (also is None or bool((also[a] == also[b]).all())):
            break
    else:
        raise Collision
    if not ordered:
        ids = np.empty(n, dtype=np.int64)
        ids[order] = group
        return ids, first
    return ranked(order, group, first)


def ranked(order: Ints, group: Ints, first: Ints) -> tuple[Ints, Ints]:
    """Renumber groups by their first position: each element's number and the first
    position of each number."""
    distinct = first.size
    o2, _ = groups(first.astype(np.uint64), bits=max(1, int(first.max()).bit_length()))
    rank = np.empty(distinct, dtype=np.int64)
    rank[o2] = np.arange(distinct)
    ids = np.empty(order.size, dtype=np.int64)
    ids[order] = rank[group]
    return ids, first[o2]


def numbered_exactly(col: npt.NDArray[np.bytes_]) -> tuple[Ints, Ints]:
    """``numbered`` by sorting the values themselves (no hash): slower, always exact."""
    _, first, inverse = np.unique(col, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty(order.size, dtype=np.int64)
    rank[order] = np.arange(order.size)
    return rank[inverse.ravel()], first[order].astype(np.int64)
