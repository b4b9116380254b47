"""From raw payloads to columnar readings: the plain decoder (``payloads``) and its JSON
reading with the repeated-key check (``json_doc``), meta payloads (``meta``), the
compiled payload scanner (``scanner``, lexing in ``lexer``), batch decoding (``batch``)
and the bounded meter registry that numbers meters and lines for the kernels
(``registry``)."""
