"""The voice channel: dial loops, call flows, agents, bridging and pacing.

The daemon shell (`engine.app`, `engine.daemon`, `engine.commands`) wires
these parts together; nothing here imports the shell.
"""
