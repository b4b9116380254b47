"""What survives a crash: atomic files, the write-ahead log of raw messages, kernel
checkpoints, the spool of results waiting for a database, and ``durability``, which
runs the log, acknowledgements and checkpoints for the pipeline."""
