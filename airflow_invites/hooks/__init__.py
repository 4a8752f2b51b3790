"""One hook per platform; each is that platform's adapter for the invite algorithm."""
