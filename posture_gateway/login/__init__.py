"""What every login front end shares: the server-side login transaction and the device check."""
