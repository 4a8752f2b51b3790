"""Platform-neutral parts: outcomes, errors, HTTP, the invite algorithm. No platform names here."""
