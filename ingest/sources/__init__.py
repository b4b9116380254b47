"""Where readings come from: MQTT (JSON and Sparkplug B payloads), the ``Source``
protocol every source follows (``base``), and the hand-off that carries raw messages
from a source's network thread to the pipeline."""
