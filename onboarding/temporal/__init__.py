"""Temporal plumbing: the client connection, payload encryption and the search attributes."""
