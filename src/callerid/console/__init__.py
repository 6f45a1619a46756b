"""The self-serve web console: server-rendered pages over the same services as the API and the CLI."""
