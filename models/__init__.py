"""The model side (synchronous): turn format, loading, and the decide/reply engine."""
