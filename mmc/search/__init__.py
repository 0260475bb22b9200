"""Collaboration search strategies; each returns a SearchResult."""
