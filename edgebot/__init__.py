"""edgebot: detect IoT botnets on the gateway itself."""

__version__ = "0.1.0"
