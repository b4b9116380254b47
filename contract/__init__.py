"""wattline's contract vocabulary: what both the daemon and the simulators speak.

Topic layouts and names (``topics``), the error vocabulary (``errors``), durations
(``durations``), the Arrow schemas of what comes out (``schemas``) and the packaged
reference data (``reference_data``: kgce and CO2 factors, national levels). Nothing
here does network I/O or keeps state; the daemon (``wattline.ingest``) and the
simulators (``wattline.simulators``) import from here, never from each other.
"""
