"""Small shared helpers: the duration syntax, the bounded JSON parser, generated secret files."""
