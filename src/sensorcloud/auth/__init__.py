"""The auth service: users, sessions (refresh tokens), signing keys; later devices."""
