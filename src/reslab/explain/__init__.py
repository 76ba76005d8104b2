"""Looking inside the networks: class activation maps, Grad-CAM, weight images, gradient flow."""

from reslab.explain.cam import MapResult, class_activation_maps, gap_head
from reslab.explain.gradcam import grad_cam
from reslab.explain.gradient_flow import layer_grad_norms, weight_layers
from reslab.explain.state import ExplainError
from reslab.explain.weights import first_layer_images, image_grid

__all__ = [
    "ExplainError",
    "MapResult",
    "class_activation_maps",
    "first_layer_images",
    "gap_head",
    "grad_cam",
    "image_grid",
    "layer_grad_norms",
    "weight_layers",
]
