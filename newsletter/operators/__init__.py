"""The people who run the newsletter: dashboard accounts (admins), their
password rules (passwords), and the set-up checks (doctor)."""
