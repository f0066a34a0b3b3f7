#!/usr/bin/env python3
"""Rewrites a requests.parquet as Spark, Hive or DuckDB write one: string columns plain (no Arrow
dictionary type) and no Arrow schema stored in the file; the Parquet pages stay dictionary-encoded
where the writer chooses to. Used by `PLAIN=1 benches/compare.sh`.

    python3 benches/plain.py SRC.parquet DST.parquet
"""
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def main(src, dst):
    f = pq.ParquetFile(src)
    writer = None
    for i in range(f.num_row_groups):
        t = f.read_row_group(i)
        cols = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in t.columns]
        t = pa.table(cols, names=t.column_names)
        if writer is None:
            writer = pq.ParquetWriter(dst, t.schema, compression="zstd", store_schema=False)
        writer.write_table(t, row_group_size=len(t))
    writer.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
