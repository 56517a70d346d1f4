"""Recorded episodes out to the datasets robot learning trains on (``vla-envs export``).

- ``replay``: a run's episodes re-rendered from seed + actions (``steps.parquet`` stores joint
  state and actions, not observations), checked bit for bit against the recorded joint states.
- ``lerobot_format`` (+ ``lerobot_writer``, run in LeRobot's environment): a LeRobotDataset (v3
  layout) written by LeRobot's own dataset writer.
- ``minari_format``: a Minari dataset.

Both carry the images, state, actions, the instruction (LeRobot's task string) and the embodied
metrics: each frame's running cost, and each episode's final values.
"""
