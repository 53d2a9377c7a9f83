"""The fleet simulator: simulated devices of every platform over the real device protocol."""
