"""``stream-warmer serve``: consumer group -> windows -> strategy -> policy -> warm commands.

The entry point is :class:`stream_warmer.serve.app.ServeApp`; the pieces it wires
(windows, batcher, policy, precision, sinks, metrics) are usable on their own.
"""
