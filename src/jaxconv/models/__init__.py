"""Model presets: flax.linen Modules built from jaxconv layers.

Every model takes ``conv_backend`` (passed to all its conv and pooling layers) and is
called as ``model.apply(variables, x, train=...)`` on channels-last ``x``.
"""

from jaxconv.models.baselines import MLP as MLP
from jaxconv.models.baselines import LogisticRegression as LogisticRegression
from jaxconv.models.cnn import CNN as CNN
from jaxconv.models.cnn import MNIST1DCNN as MNIST1DCNN
from jaxconv.models.cnn import DepthwiseSeparableCNN as DepthwiseSeparableCNN
from jaxconv.models.cnn import LeNet5 as LeNet5
from jaxconv.models.resnet import ResNet as ResNet
from jaxconv.models.resnet import resnet18 as resnet18
from jaxconv.models.resnet import resnet20 as resnet20
from jaxconv.models.resnet import resnet32 as resnet32
from jaxconv.models.resnet import resnet56 as resnet56
from jaxconv.models.vgg import VGG as VGG
