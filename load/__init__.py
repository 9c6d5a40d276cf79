"""`make load`: the four services as real processes under a realistic open-loop mix, with latency, lag and memory."""
