"""Sensors: wait for something to be true on a platform."""
