"""Optimizers, learning-rate schedules and gradient clipping (fastnn.optim)."""
from fastnn.optim.clip import clip_grad_norm_
from fastnn.optim.lr_scheduler import CosineAnnealingLR, LinearLR, LRScheduler, ReduceLROnPlateau, StepLR
from fastnn.optim.optimizer import OPTIMIZERS, SGD, Adam, AdamW, Optimizer, RMSprop

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "OPTIMIZERS",
           "LRScheduler", "StepLR", "CosineAnnealingLR", "LinearLR", "ReduceLROnPlateau", "clip_grad_norm_"]
