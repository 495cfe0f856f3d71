"""
clustersync's own plugin package: the built-in message handlers live here
as L{twisted.plugin} drop-ins, found with L{twisted.plugin.getPlugins}
exactly like handlers in a C{--plugin-dir}.
"""
