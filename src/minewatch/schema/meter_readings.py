"""The canonical meter-readings table: one row per meter and interval.

`kw` is the mean power over the interval that starts at `ts` (an hourly kWh reading
is the same number in kW). Missing or rejected readings are null, never zero: the
quality report (minewatch.power.quality) says per meter how many and why.
"""

import pyarrow as pa

from minewatch.schema.flows import TS

METER_READINGS = pa.schema(
    [
        pa.field("meter_id", pa.string(), nullable=False),
        pa.field("ts", TS, nullable=False),  # interval start, UTC
        pa.field("kw", pa.float64()),  # mean kW over the interval; null = missing/rejected
        pa.field("interval_s", pa.int32(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
    ]
)

# How a workspace stores readings on disk (<ws>/meters/*.parquet): the meter is an
# integer key (catalog table `meters` maps it to meter_id) so that grouping a billion
# rows stays cheap; kw as float32 keeps 7 significant digits, plenty for a meter.
WORKSPACE_READINGS = pa.schema(
    [
        pa.field("meter_key", pa.int32(), nullable=False),
        pa.field("ts", TS, nullable=False),
        pa.field("kw", pa.float32()),
    ]
)
