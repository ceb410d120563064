"""What every part of the package stands on: the settings (config), the one
error hierarchy (errors), the data types and status vocabulary (models),
text and file helpers, and the list's rules (policy). Nothing here touches
a database, the network or a terminal."""
