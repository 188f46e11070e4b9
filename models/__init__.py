"""Models built on minigrad: the Inception modules, GoogLeNet and the networks it is compared with.

    import models
    net = models.googlenet()                 # the paper's network, auxiliary heads included
    rows = models.summary(net, (1, 3, 224, 224))
"""

from . import memory
from .baselines import alexnet, mini_googlenet, mini_plain_net, plain_net
from .googlenet import INCEPTION_TABLE, GoogLeNet, googlenet, training_loss
from .inception import ConvBNReLU, ConvReLU, Inception, InceptionNaive
from .inception_v3 import InceptionV3, inception_v3
from .summary import summary

MODELS = {
    "googlenet": googlenet,
    "googlenet-naive": lambda **kw: googlenet(naive=True, **kw),
    "googlenet-bn": lambda **kw: googlenet(batch_norm=True, **kw),
    "inception-v3": inception_v3,
    "alexnet": alexnet,
    "plain": plain_net,
    "mini-googlenet": mini_googlenet,
    "mini-googlenet-naive": lambda **kw: mini_googlenet(naive=True, **kw),
    "mini-googlenet-bn": lambda **kw: mini_googlenet(batch_norm=True, **kw),
    "mini-googlenet-factorized": lambda **kw: mini_googlenet(factorized=True, **kw),
    "mini-plain": mini_plain_net,
}


def canonical_name(name):
    """A model's name as MODELS spells it: inception_v3 (Python's spelling) is inception-v3."""
    return name.replace("_", "-") if name not in MODELS and name.replace("_", "-") in MODELS else name


def model_name(name, option="model", alternatives=""):
    """The MODELS name a command was given (either spelling), or a one-line CommandError naming the option and
    the choices (`alternatives`: what else the option takes, e.g. " or a .onnx file")."""
    from minigrad.cli import CommandError
    canonical = canonical_name(name)
    if canonical not in MODELS:
        raise CommandError(f"{option}: unknown model {name!r}; expected one of {', '.join(MODELS)}{alternatives}")
    return canonical


def get_model(name, **kwargs):
    """Build a model by name (see MODELS; underscores for hyphens are accepted)."""
    name = canonical_name(name)
    if name not in MODELS:
        raise ValueError(f"get_model: unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


__all__ = ["memory", "ConvReLU", "ConvBNReLU", "InceptionV3", "inception_v3", "Inception", "InceptionNaive", "GoogLeNet",
           "googlenet", "alexnet", "plain_net", "mini_googlenet", "mini_plain_net", "INCEPTION_TABLE", "MODELS",
           "canonical_name", "model_name", "get_model", "summary", "training_loss"]
