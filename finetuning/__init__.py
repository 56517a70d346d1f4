"""Fine-tuning for efficiency: a residual on a frozen base policy, trained with the shaped reward."""

from finetuning.residual_env import ResidualActionEnv

__all__ = ["ResidualActionEnv"]
