"""Where episodes and models run: in this process or N local processes (``workers``), on Ray
actors (``ray_backend``), and the policy servers a run starts for its models (``serving``).
Each takes the config and the driver's ``RunPlan`` and gives back ``(unit, EpisodeResult)``."""
