"""Training (K2 report §2.4–2.5, §3.1): one loop for pre-training and SFT, recipe, MuonClip, expert balancing,
checkpoints, metrics, report."""

from openk2.train.batch import BatchSource, TokenBatch
from openk2.train.checkpoint import TrainerState, find_checkpoints, load_checkpoint, save_checkpoint
from openk2.train.loop import RunSummary, train
from openk2.train.pretraining import pretrain
from openk2.train.recipe import Recipe, TrainingRecipe, load_recipe
from openk2.train.stage import Stage

__all__ = [
    "BatchSource",
    "Recipe",
    "RunSummary",
    "Stage",
    "TokenBatch",
    "TrainerState",
    "TrainingRecipe",
    "find_checkpoints",
    "load_checkpoint",
    "load_recipe",
    "pretrain",
    "save_checkpoint",
    "train",
]
