"""One module per emulated platform; each defines ``PLATFORM``."""
