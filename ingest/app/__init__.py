"""The application shell: the ``wattline`` command line, the daemon loop, the demo,
the embedded broker, systemd notification and config reload."""
