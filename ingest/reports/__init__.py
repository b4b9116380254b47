"""Reports over the Parquet store: what a plant manager or an auditor reads."""
