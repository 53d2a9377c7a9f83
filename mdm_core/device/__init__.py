"""The device side of the MDM: enrollment, the CA, proofs, check-ins, commands and long-polls."""
