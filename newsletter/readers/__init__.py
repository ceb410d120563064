"""The readers and their list: importing and checking addresses (lists), the
signed links a reader clicks (tokens), signing up (signup) and what a reader
does from a link (actions)."""
