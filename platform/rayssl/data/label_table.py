"""A user's label table: which train images carry which class, read from CSV or parquet (no Ray).

The table names images by a key column, `sample_id` (the shard rows' id) or `path` (relative to the
source root: the same string for folder sources), and gives each a `label`: a class name from the
shard set's classes, or an integer class id. Every problem is one line naming the file, the row
and the value, raised before anything expensive starts:

- a key that is in no shard (a key naming a test image is skipped and counted: test labels come
  from the shards, so a table used at build time can be used again at fine-tune time);
- a key listed twice with different labels (twice with the same label is counted, not fatal);
- an empty label, an unknown class name, a class id out of range;
- a label that contradicts the one the shards already hold for that image.

Rows are numbered as a user sees them: "line N" of a CSV (the header is line 1), "row N" of a
parquet table (the first data row is row 1).
"""

from __future__ import annotations

import io
from collections.abc import Sequence, Set
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from rayssl.config import StorageConfig
from rayssl.data import storage

KEY_COLUMNS = ("sample_id", "path")


class LabelTableError(ValueError):
    """A label table is unusable; the message names the file, the row and what is wrong."""


@dataclass(frozen=True)
class LabelTable:
    """The rows of a label table as text: keys [N] and labels [N] (None where empty)."""

    uri: str
    key_column: str
    keys: list[str]
    labels: list[str | None]
    is_csv: bool

    def where(self, row: int) -> str:
        """'<uri> line 7' (CSV, header on line 1) or '<uri> row 6' (parquet) for the 0-based data row."""
        return f"{self.uri} line {row + 2}" if self.is_csv else f"{self.uri} row {row + 1}"


@dataclass(frozen=True)
class ResolvedLabels:
    """A label table applied to the train split."""

    labels: np.ndarray  # int64 [N]: class id per train sample index, -1 where the table gives none
    classes: list[str] | None  # class names in id order (the shards', or the table's sorted names)
    rows: int  # data rows in the table
    repeated: int  # keys listed more than once with the same label (kept once)
    test_keys: int = 0  # keys naming test images: skipped (test labels come from the shards' test split)
    per_class: dict[int, int] = field(default_factory=dict)  # labels per class id


def read_label_table(uri: str, storage_cfg: StorageConfig = StorageConfig(), *, needs_labels: bool = True) -> LabelTable:
    """Read a CSV or parquet label table from a local path or any URI the shards accept.
    needs_labels=False: a list of images (semisup.labelled_ids, `rayssl select`'s CSV) whose `label`
    column, if any, is not read (labels are None)."""
    try:
        payload = storage.read_bytes(uri, storage_cfg)
    except FileNotFoundError:
        raise LabelTableError(f"label table {uri} not found") from None
    is_csv = not payload.startswith(b"PAR1")
    try:
        table = _parse_csv(payload) if is_csv else pq.read_table(io.BytesIO(payload))
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise LabelTableError(f"label table {uri}: not a readable {'CSV' if is_csv else 'parquet'} table ({exc})") from None
    keys = [c for c in KEY_COLUMNS if c in table.column_names]
    if not keys or (needs_labels and "label" not in table.column_names):
        wanted = f"a key column ({' or '.join(KEY_COLUMNS)})" + (" and a `label` column" if needs_labels else "")
        raise LabelTableError(f"{'label table' if needs_labels else 'image list'} {uri}: needs {wanted}, has {table.column_names}")

    def texts(column: str) -> list[str | None]:
        return [None if v is None or not v.strip() else v.strip() for v in table.column(column).cast(pa.string()).to_pylist()]

    key_texts = texts(keys[0])
    labels: list[str | None] = texts("label") if needs_labels else [None] * len(key_texts)
    result = LabelTable(uri, keys[0], [key for key in key_texts if key is not None], labels, is_csv)
    if len(result.keys) < len(key_texts):
        raise LabelTableError(f"{result.where(key_texts.index(None))}: empty {result.key_column}")
    return result


def _parse_csv(payload: bytes) -> pa.Table:
    # Every column as text: labels may be names or ids, keys may look like numbers ("00042").
    header = pacsv.read_csv(io.BytesIO(payload), read_options=pacsv.ReadOptions(skip_rows_after_names=10**9)).column_names
    return pacsv.read_csv(
        io.BytesIO(payload),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header}, strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )


def resolve_labels(
    table: LabelTable,
    train_ids: Sequence[str],
    classes: list[str] | None,
    test_ids: Set[str] = frozenset(),
    shard_labels: np.ndarray | None = None,
    num_classes: int | None = None,
    scope: str = "the train split",
) -> ResolvedLabels:
    """Apply the table to the train split.

    train_ids: [N] sample id of each train row by its index. classes: the shard set's class names
    (None: the table's labels are integer ids below `num_classes`, or names, ordered alphabetically).
    shard_labels: int64 [N] labels the shards already hold (-1 none): a contradiction is an error,
    and the result keeps them where the table says nothing.
    """
    position = {sample_id: i for i, sample_id in enumerate(train_ids)}
    classes = classes if classes is not None else _names_of(table)
    labels = np.full(len(train_ids), -1, np.int64) if shard_labels is None else shard_labels.astype(np.int64).copy()
    from_table: dict[int, tuple[int, int]] = {}  # train index -> (class id, table row)
    repeated = test_keys = 0
    for row, (key, text) in enumerate(zip(table.keys, table.labels)):
        class_id = _class_of(table, row, text, classes, num_classes)
        if key in test_ids and key not in position:
            test_keys += 1
            continue
        index = _index_of(table, row, key, position, train_ids, scope)
        if index in from_table:
            earlier_class, earlier_row = from_table[index]
            if earlier_class != class_id:
                raise LabelTableError(
                    f"{table.where(row)}: {key!r} is labelled {_name(class_id, classes)!r} here and "
                    f"{_name(earlier_class, classes)!r} at {table.where(earlier_row).removeprefix(table.uri + ' ')}"
                )
            repeated += 1
            continue
        if labels[index] >= 0 and labels[index] != class_id:
            raise LabelTableError(
                f"{table.where(row)}: {key!r} is labelled {_name(class_id, classes)!r} here but "
                f"{_name(int(labels[index]), classes)!r} in the shards"
            )
        from_table[index] = (class_id, row)
        labels[index] = class_id
    counts = np.bincount(labels[labels >= 0], minlength=len(classes) if classes else 0)
    return ResolvedLabels(labels, classes, len(table.keys), repeated, test_keys, {c: int(n) for c, n in enumerate(counts) if n})


def resolve_keys(table: LabelTable, train_ids: Sequence[str], test_ids: Set[str] = frozenset()) -> np.ndarray:
    """int64 [K] train index of each row's key, in table order. A key naming a test image is an error
    (its image must never be trained on), as is a key in no shard."""
    position = {sample_id: i for i, sample_id in enumerate(train_ids)}
    indices = []
    for row, key in enumerate(table.keys):
        if key in test_ids and key not in position:
            raise LabelTableError(f"{table.where(row)}: {table.key_column} {key!r} is a test image: it cannot be trained on")
        indices.append(_index_of(table, row, key, position, train_ids, "the train split"))
    return np.asarray(indices, np.int64)


def label_listing(
    table: LabelTable, listing: dict[str, list[tuple[str, int | None]]], classes: list[str] | None
) -> tuple[dict[str, list[int | None]], list[str] | None]:
    """At build time (`rayssl shards build --labels`): the table applied to every split of a source's
    listing {split: [(sample id, label from a class folder or None)]}, so it may label test images too.
    Returns ({split: labels}, class names)."""
    keys = [key for entries in listing.values() for key, _ in entries]
    known = np.array([-1 if label is None else label for entries in listing.values() for _, label in entries], np.int64)
    resolved = resolve_labels(table, keys, classes, shard_labels=known, scope="any split of the source")
    labelled, start = {}, 0
    for split, entries in listing.items():
        labelled[split] = [None if v < 0 else int(v) for v in resolved.labels[start : start + len(entries)]]
        start += len(entries)
    return labelled, resolved.classes


def _names_of(table: LabelTable) -> list[str] | None:
    """Class names for shards that have none: None if every label is an integer id, else the sorted names."""
    texts = {t for t in table.labels if t is not None}
    return None if all(t.lstrip("-").isdigit() for t in texts) else sorted(texts)


def _index_of(table: LabelTable, row: int, key: str, position: dict[str, int], train_ids: Sequence[str], scope: str) -> int:
    index = position.get(key)
    if index is not None:
        return index
    example = f" (keys look like {train_ids[0]!r})" if len(train_ids) else ""
    raise LabelTableError(f"{table.where(row)}: {table.key_column} {key!r} is in no shard of {scope}{example}")


def _class_of(table: LabelTable, row: int, text: str | None, classes: list[str] | None, num_classes: int | None) -> int:
    if text is None:
        raise LabelTableError(f"{table.where(row)}: empty label for {table.key_column} {table.keys[row]!r}")
    if classes is not None and text in classes:
        return classes.index(text)
    count = len(classes) if classes is not None else num_classes
    if text.lstrip("-").isdigit():
        class_id = int(text)
        if count is None or 0 <= class_id < count:
            return class_id
        raise LabelTableError(f"{table.where(row)}: class id {class_id} is out of range [0, {count})")
    shown = ", ".join(classes[:12]) + (", ..." if len(classes) > 12 else "") if classes else "none: integer ids only"
    raise LabelTableError(f"{table.where(row)}: unknown class {text!r} (classes: {shown})")


def _name(class_id: int, classes: list[str] | None) -> str:
    return classes[class_id] if classes is not None and 0 <= class_id < len(classes) else str(class_id)
