"""What every process needs: configuration, database pool and migrations, logging, services."""
