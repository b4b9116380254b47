"""wattline simulators: plant process models and gateway behaviour, published over MQTT.

Data flows one way through the modules:

    plant      true cumulative quantities per meter (eaf, potline, kiln models)
    gateway    registers (quantised, wrapping), payload forms, meta, optional faults
    publisher  topics, batching and a plant clock: ``generate`` (no broker), ``simulate``
    truth      the intensity the collector should show, per tick and window

``scenario`` reads the packaged ``scenarios/<model>.toml``; ``reference`` the
carriers' kgce factors. Nothing here imports ``wattline.kernels``.
"""
