"""Gymnasium wrappers that record joint state and torques and report embodied cost."""
