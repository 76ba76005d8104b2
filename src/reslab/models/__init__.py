"""Model families. Each validates its own ``depth`` and names the valid values when it cannot build one."""

from reslab.models.cnn import CNN
from reslab.models.depth import count_params, weight_layer_depth
from reslab.models.mlp import MLP
from reslab.models.resnet import ResNet

__all__ = ["CNN", "MLP", "ResNet", "count_params", "weight_layer_depth"]
