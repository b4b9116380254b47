"""Reports over the Parquet store: what a plant manager or an auditor reads, and the
periods and batches they are made of (``store_periods``)."""
