"""Gateway side: flow metering, sources, incidents, sinks and the agent. Never imports TensorFlow."""
