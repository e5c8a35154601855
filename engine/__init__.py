"""The generation engine: request/result types, backends, the fair GPU job queue and image helpers.

Knows nothing of Discord, users or databases: owners are opaque strings.
"""
