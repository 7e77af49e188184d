"""The shared core every service uses: settings, database, tokens, logging, health, metrics."""
