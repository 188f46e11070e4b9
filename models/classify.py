"""python -m models.classify: the top classes of one photo, by an ONNX network or one of minigrad's.

    python -m models.classify --model googlenet-12.onnx --image cat.jpg --labels synset.txt
    python -m models.classify --model googlenet --checkpoint runs/digits/checkpoint.npz --image seven.png

The photo is prepared as the network was trained: `caffe` (the default; the zoo's GoogLeNet and BN-Inception came
from Caffe) resizes the shorter side to 256, crops the centre to the network's input (224x224), keeps 0-255
values, orders the channels BGR and subtracts Caffe's ImageNet means (B 104, G 117, R 123); `imagenet` is
torchvision's (RGB in 0-1, minus the means 0.485/0.456/0.406, over the deviations 0.229/0.224/0.225); `plain`
scales RGB to 0-1.  --image takes a file, or the name of a photo shipped with scikit-image or scikit-learn
(chelsea, astronaut, coffee, china, flower).  The output is one screen: what ran, and the top classes.
"""

from __future__ import annotations

import os
import sys

import numpy as np

import minigrad
from minigrad import cli

CAFFE_MEANS_BGR = (104.0, 117.0, 123.0)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PREPARATIONS = {
    "caffe": "shorter side to 256, centre crop, BGR, 0-255 minus Caffe's means (104, 117, 123)",
    "imagenet": "shorter side to 256, centre crop, RGB in 0-1, torchvision's mean and deviation",
    "plain": "shorter side to 256, centre crop, RGB in 0-1",
}
SAMPLE_PHOTOS = {"chelsea": "skimage", "astronaut": "skimage", "coffee": "skimage", "china": "sklearn",
                 "flower": "sklearn"}


def parse_args(argv):
    from . import MODELS, model_name
    parser = cli.Parser(prog="python -m models.classify", description="The top classes of one photo.")
    parser.add_argument("--model", required=True, help=f"an ONNX file (FILE.onnx) or one of {', '.join(MODELS)}")
    parser.add_argument("--image", required=True, help="a photo file, or a sample photo's name: "
                        f"{', '.join(SAMPLE_PHOTOS)}")
    parser.add_argument("--labels", help="a text file of class names, one per line, in the network's order")
    parser.add_argument("--top", type=cli.integer(1, 100), default=5, help="how many classes to print (default 5)")
    parser.add_argument("--checkpoint", help="weights for a model named by --model: a checkpoint.npz written by "
                        "python -m models.train (without one the weights are random)")
    parser.add_argument("--preprocess", choices=list(PREPARATIONS), default="caffe",
                        help="how the photo is prepared (default caffe, as the zoo's Caffe-trained networks expect)")
    args = parser.parse_args(argv)
    if not args.model.endswith(".onnx"):
        args.model = model_name(args.model, "--model", " or a .onnx file")
    if args.checkpoint and args.model.endswith(".onnx"):
        raise cli.CommandError("--checkpoint is for a model named by --model; an ONNX file holds its own weights")
    for option in ("labels", "checkpoint"):
        path = getattr(args, option)
        if path and not os.path.isfile(path):
            raise cli.CommandError(f"--{option}: no file {path!r}")
    return args


def read_photo(spec):
    """An RGB photo as a PIL image: a file, or a sample shipped with scikit-image or scikit-learn."""
    from PIL import Image, UnidentifiedImageError
    if os.path.isfile(spec):
        try:
            with Image.open(spec) as image:
                return image.convert("RGB")
        except (UnidentifiedImageError, OSError) as error:
            raise cli.CommandError(f"--image: {spec} is not a photo PIL can read ({error})") from None
    if spec in SAMPLE_PHOTOS:
        try:
            if SAMPLE_PHOTOS[spec] == "skimage":
                import skimage.data
                pixels = getattr(skimage.data, spec)()
            else:
                from sklearn.datasets import load_sample_image
                pixels = load_sample_image(f"{spec}.jpg")
        except ImportError:
            raise cli.CommandError(f"--image {spec}: that sample ships with "
                                   f"{'scikit-image' if SAMPLE_PHOTOS[spec] == 'skimage' else 'scikit-learn'}, "
                                   "which is not installed") from None
        return Image.fromarray(np.asarray(pixels, np.uint8)).convert("RGB")
    raise cli.CommandError(f"--image: no file {spec!r}, and not a sample photo ({', '.join(SAMPLE_PHOTOS)})")


def prepare(photo, size, how):
    """(1, 3, size, size) float32: the shorter side resized to 256 (at least `size`), the centre cropped."""
    from PIL import Image
    short = max(256, size)
    width, height = photo.size
    scale = short / min(width, height)
    resized = photo.resize((max(size, round(width * scale)), max(size, round(height * scale))), Image.BILINEAR)
    left, top = (resized.size[0] - size) // 2, (resized.size[1] - size) // 2
    pixels = np.asarray(resized.crop((left, top, left + size, top + size)), np.float32)   # (H, W, RGB), 0-255
    if how == "caffe":
        pixels = pixels[:, :, ::-1] - np.array(CAFFE_MEANS_BGR, np.float32)
    elif how == "imagenet":
        pixels = (pixels / 255 - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)
    else:
        pixels = pixels / 255
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)


def load_network(args):
    """(model, (channels, height, width), description)."""
    if args.model.endswith(".onnx"):
        try:
            model = minigrad.onnx.load(args.model)
            shape = model.input_shape()
        except (minigrad.onnx.OnnxError, ValueError) as error:
            raise cli.CommandError(str(error)) from None
        return model, shape, f"{args.model} (ONNX, opset {model.opset})"
    from . import get_model
    if not args.checkpoint:
        model = get_model(args.model)
        return model, (model.in_channels, *model.input_size), f"{args.model} with random weights (no --checkpoint)"
    from minigrad import checkpoint
    try:
        arrays, header = checkpoint.load(args.checkpoint)
    except checkpoint.CheckpointError as error:
        raise cli.CommandError(str(error)) from None
    if header.get("model") != args.model or "input" not in header:
        raise cli.CommandError(f"--checkpoint {args.checkpoint} holds a {header.get('model')} network"
                               f"{'' if 'input' in header else ' without its input description'}, not a {args.model}")
    model = get_model(args.model, **header["input"])
    try:
        model.load_state_dict(checkpoint.split(arrays, "model"))
    except (KeyError, ValueError) as error:
        raise cli.CommandError(f"--checkpoint {args.checkpoint}: {error}") from None
    return model, (model.in_channels, *model.input_size), f"{args.model} from {args.checkpoint}"


def main(argv=None):
    return cli.run("python -m models.classify", _main, argv)


def _main(argv):
    args = parse_args(argv)
    labels = None
    if args.labels:
        with open(args.labels, encoding="utf-8") as f:
            labels = [line.strip() for line in f if line.strip()]
    model, (channels, height, width), description = load_network(args)
    if channels != 3 or height != width:
        raise cli.CommandError(f"--model {args.model} takes {channels}x{height}x{width} inputs; a photo gives 3 "
                               "square channels")
    x = prepare(read_photo(args.image), height, args.preprocess)
    model.eval()
    with minigrad.no_grad():
        out = model(minigrad.Tensor(x))
    scores = (out[0] if isinstance(out, tuple) else out).numpy().reshape(-1).astype(np.float64)
    if scores.min() < 0 or abs(scores.sum() - 1) > 1e-3:               # logits: the graph has no softmax
        scores = np.exp(scores - scores.max())
        scores /= scores.sum()
    if labels is not None and len(labels) != scores.size:
        raise cli.CommandError(f"--labels {args.labels} names {len(labels)} classes; the network gives {scores.size}")
    print(f"model: {description}")
    print(f"image: {args.image}, prepared as {args.preprocess}: {PREPARATIONS[args.preprocess]} to {height}x{width}")
    for rank, index in enumerate(np.argsort(-scores)[:args.top], 1):
        name = labels[index] if labels else f"class {index}"
        print(f"{rank}. {scores[index]:7.2%}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
