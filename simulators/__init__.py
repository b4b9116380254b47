"""wattline simulators: plant process models and gateway behaviour, published over MQTT."""
