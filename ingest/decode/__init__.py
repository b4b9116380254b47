"""From raw payloads to columnar readings: the plain decoder (``payloads``), the
compiled payload scanner (``scanner``), batch decoding (``batch``) and the meter
registry that numbers meters and lines for the kernels (``registry``)."""
