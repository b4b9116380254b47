"""What survives a crash: atomic files, the write-ahead log of raw messages, kernel
checkpoints and the spool of results waiting for a database."""
