"""Who the caller is: draftsync's own HS256 tokens (server/auth.py), the app's own JWTs (a
public key or a JWKS), and an embedding host's `authenticate` callable."""
