"""What the tests share, and the benchmark with them: servers, drivers, data, one way to wait."""
