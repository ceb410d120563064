"""Per-reader picks: a reader's interests (interests), how papers are scored
against them (ranking), and the picks chosen and remembered for a send
(picking)."""
