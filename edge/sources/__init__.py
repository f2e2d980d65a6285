"""Traffic sources for the agent: pcap replay, live interface, Zeek log follower, CSV."""
