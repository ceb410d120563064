"""The day's papers: reading a batch from a file or the papers feed (batches)
and fetching it over HTTP (fetch)."""
