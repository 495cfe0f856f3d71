"""
Console programs: C{clustersync-admin}, C{clustersync-chat} and the
development cluster behind C{make cluster}.
"""
