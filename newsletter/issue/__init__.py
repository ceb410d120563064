"""An issue of the newsletter: which editions a day makes, daily or weekly
(editions), and the email and web copies rendered from them (render)."""
