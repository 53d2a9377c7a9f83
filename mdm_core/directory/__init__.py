"""The directory mirror (users, nested groups, account state) and the sources that write it."""
