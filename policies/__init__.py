"""Policy adapters: VLA models, their compressed variants, scripted experts."""
