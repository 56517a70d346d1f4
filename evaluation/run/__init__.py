"""Running an evaluation config: its schema, the work units, the episode, latency in the closed
loop, the backends (sequential, local processes, Ray, policy servers) and the run's files."""
