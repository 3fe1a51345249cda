"""The embedded engine: hybrid jobs as detached local processes, with no AWS account and no Docker."""
