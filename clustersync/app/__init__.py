"""
Service assembly: configuration, the MultiService, the C{twistd} plugin's
options, logging and process integration (systemd, GC tuning).
"""
