"""Models built by name: a classifier (``build_model``) or an audio-video masked autoencoder (``build_av_model``)."""

from lifelong.models.av_models import AV_MODELS, build_av_model, model_family
from lifelong.models.backbones import BACKBONES, backbone_names, build_backbone, validate_backbone
from lifelong.models.classifier import ContinualClassifier, build_model
from lifelong.models.dsimplex import DSimplexHead as DSimplexHead  # registers the "dsimplex" head
from lifelong.models.heads import HEADS, CosineHead, LinearHead, MultiHead, build_head, mask_value
from lifelong.models.resnet import ReducedResNet18

__all__ = [
    "AV_MODELS",
    "build_av_model",
    "model_family",
    "BACKBONES",
    "HEADS",
    "ContinualClassifier",
    "CosineHead",
    "LinearHead",
    "MultiHead",
    "ReducedResNet18",
    "backbone_names",
    "build_backbone",
    "build_head",
    "build_model",
    "mask_value",
    "validate_backbone",
]
