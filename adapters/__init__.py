"""The edges of agno-eventlog: Agno integration, the memory-manager facade and the CLI.

The only package that imports Agno or reads configuration from the environment."""
