"""SQL over the platform's database, one module per concern, taking a pool or a connection."""
