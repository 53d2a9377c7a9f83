"""The Redis implementations of the core's shared interfaces: client, bus, limits,
replay."""
