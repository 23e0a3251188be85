"""The HTTP services beside the workers: key verification for the API gateway, the codec server."""
