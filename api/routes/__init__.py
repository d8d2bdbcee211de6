"""Route modules of the exports API."""
