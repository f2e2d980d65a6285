"""Alert sinks for the agent: JSON lines, MQTT with an on-disk queue."""
