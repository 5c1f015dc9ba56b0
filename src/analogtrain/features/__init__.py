"""Fixed pretrained feature extractors and the feature cache (CIFAR transfer learning).

>>> from analogtrain.features import get_backbone, extract_features
>>> bb = get_backbone("efficientnet-lite0", input_size=224)      # doctest: +SKIP
>>> feats = extract_features(x_train_uint8_nhwc, bb)            # doctest: +SKIP  [N, 1280]
"""

from .backbones import (
    DEFAULT_BACKBONE,
    EFFICIENTNET_LITE0_PACKAGE,
    PREPROCESS_VERSION,
    Backbone,
    available_backbones,
    get_backbone,
)
from .cache import default_cache_dir, extract_features, feature_cache_path
from .efficientnet_lite0 import EfficientNetLite0

__all__ = [
    "DEFAULT_BACKBONE",
    "EFFICIENTNET_LITE0_PACKAGE",
    "PREPROCESS_VERSION",
    "Backbone",
    "EfficientNetLite0",
    "available_backbones",
    "default_cache_dir",
    "extract_features",
    "feature_cache_path",
    "get_backbone",
]
