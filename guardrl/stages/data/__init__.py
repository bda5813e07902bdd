"""Data stage: converters from public data sets to guardrl Parquet (``guardrl data``)."""
