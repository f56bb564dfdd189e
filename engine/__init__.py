"""gradtui's training engine: configuration, data, models, probe, session.

Nothing in this package imports textual, rich or plotext (a test enforces it).
"""
