"""The service: ``remstate serve``, the HTTP API over the manager (see DESIGN.md)."""
